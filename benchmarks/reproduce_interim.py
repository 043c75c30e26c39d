"""Interim evaluation of the converged reproduction: the encoders that have finished training, before the
rest of the stages (issue 24).

    python benchmarks/reproduce_interim.py --out benchmarks/results/reproduction/converged

The full run (``reproduce.py``) evaluates every encoder with every baseline once both encoders have
stopped; on 2 CPU cores the second encoder takes hours, so this evaluates each finished encoder
now, against the rows the issue's goals compare it with: the base encoder, BM25 (full text and
responses), RepSim, random and grad-cos / TracIn at AirRep's storage (384) and at 2,048, on the
paper-protocol gold and the local gold; classification; entity-swap tracing. Stages:
``stages/interim/*.json`` (apart, so the full run's stage total does not count them); results:
``eval/interim_*``. Nothing here is chosen on the gold.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/reproduce.py and stages.py, also when loaded by path
    sys.path.insert(0, str(HERE))
from bench_options import bench_parser  # noqa: E402
from reproduce import SCALES, Pipeline  # noqa: E402
from stages import Stages  # noqa: E402

LDS_ROWS = (
    "base", "bm25", "bm25:text=response", "random", "repsim",
    "gradcos:proj_dim=384", "gradcos:proj_dim=2048", "tracin:proj_dim=384", "tracin:proj_dim=2048",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    converged = HERE / "results" / "reproduction" / "converged"
    ap = bench_parser(__doc__, out=converged, scales=list(SCALES), scale="default", quiet=True)
    ap.add_argument("--base-encoder", default="default", help="as reproduce.py's (the same run's)")
    ap.add_argument("--trace", action="store_true", help="also entity-swap tracing (fine-tunes the LM)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    pipe = Pipeline(a.scale, out, a.base_encoder, None, a.quiet, stages=Stages(out / "stages"))
    done = [d for d in ("retrain", "teacher") if (out / "stages" / f"encoder_{d}.json").is_file()]
    if not done:
        print("no encoder has finished training yet", file=sys.stderr)
        return 2
    from airsearch import EvalClassifyConfig, eval_classify, eval_lds, eval_trace

    pipe.lm_path = pipe.stage("lm", pipe.lm)["lm"]  # recorded: not rerun
    interim = Stages(out / "stages" / "interim")
    tag = "_".join(done)
    encoders = tuple(f"airrep:{out / f'airrep_{d}'}" for d in done)
    ev = out / "eval"
    for protocol in ("paper", "local"):
        interim.run(
            f"interim-{tag}-lds-{protocol}",
            lambda pr=protocol: eval_lds(
                pipe.lds_config(pr, encoders + LDS_ROWS, out=str(ev / f"interim_{tag}_lds_{pr}"))
            ).to_dict(),
        )
    common = dict(
        methods=encoders + ("base", "bm25", "random"), base_encoder=pipe.base_encoder, lm=pipe.lm_path
    )
    d = pipe.data
    interim.run(
        f"interim-{tag}-classify",
        lambda: eval_classify(
            EvalClassifyConfig(
                corpus=[str(d / "eval_train.jsonl")], queries=[str(d / "eval_queries.jsonl")],
                out=str(ev / f"interim_{tag}_classify"), **common,
            )
        ).to_dict(),
    )  # fmt: skip
    if a.trace:
        interim.run(
            f"interim-{tag}-trace-entity-swap",
            lambda: eval_trace(
                pipe.trace_config("entity-swap", ev / f"interim_{tag}_trace", common)
            ).to_dict(),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
