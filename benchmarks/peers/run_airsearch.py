"""The airsearch side of the peer benchmark: grad-dot, grad-cos, K-FAC and EK-FAC influence of the
test examples on the train examples, at the scope in ``meta.json`` (runs in airsearch's environment).

Timed operations (seconds, one run): ``score_graddot`` (per-example gradients of train and test and
their products), ``fit_kfac`` / ``fit_ekfac`` (factors on the train set), ``score_kfac`` /
``score_ekfac`` (preconditioned query gradients, train gradients, products; factors already fitted).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, load_data, timed, write_side  # noqa: E402

from airsearch.data.example import Example  # noqa: E402
from airsearch.lm import load_lm  # noqa: E402
from airsearch.methods.gradients import ParamSet  # noqa: E402
from airsearch.methods.precondition import Precondition, Preconditioner  # noqa: E402
from airsearch.methods.tracin import TracIn  # noqa: E402


def read_examples(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [Example(id=r["id"], prompt=r["prompt"], response=r["response"]) for r in rows]


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--damping", type=float, default=None, help="fixed damping; default the heuristic")
    parser.add_argument("--fixed-damping", type=float, default=1e-3, help="damping of the ekfac_fixed scores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    _, meta = load_data(data)
    lm = load_lm(str(data / "lm"), device="cpu", max_length=meta["max_length"])
    train, test = read_examples(data / "train.jsonl"), read_examples(data / "test.jsonl")
    spec = ParamSet("names", patterns=tuple(m + ".weight" for m in meta["modules"]))
    kw = {
        "params": spec,
        "batch_size": args.batch_size,
        "max_length": meta["max_length"],
        "show_progress": False,
    }
    ops = args.ops.split(",")
    scores, timings = {}, {}
    if "graddot" in ops:
        scores["graddot"], timings["score_graddot"] = timed(lambda: TracIn([lm], **kw).score(train, test))
    if "gradcos" in ops:
        scores["gradcos"], timings["score_gradcos"] = timed(
            lambda: TracIn([lm], normalize=True, **kw).score(train, test)
        )
    for kind in ("kfac", "ekfac"):
        if kind not in ops:
            continue
        pre = Precondition(
            kind, sample=train, damping=args.damping, batch_size=args.batch_size, max_samples=0
        )
        method = TracIn([lm], precondition=pre, **kw)
        featurizer = method.ck.featurizers[0]
        _, timings[f"fit_{kind}"] = timed(lambda f=featurizer: f.preconditioner)
        scores[kind], timings[f"score_{kind}"] = timed(lambda m=method: m.score(train, test))
        cos = TracIn([lm], normalize=True, precondition=pre, **kw)
        cos.ck.featurizers[0]._pre = featurizer.preconditioner  # the factors just fitted
        scores[f"{kind}_cos"] = cos.score(train, test)
        if kind == "ekfac":
            fixed = TracIn([lm], precondition=Precondition(kind, damping=args.fixed_damping), **kw)
            fixed.ck.featurizers[0]._pre = Preconditioner(
                featurizer.preconditioner.factors, featurizer.gm, args.fixed_damping
            )
            scores["ekfac_fixed"] = fixed.score(train, test)
    write_side(args.out, scores, timings, {"tool": "airsearch", "threads": args.threads})


if __name__ == "__main__":
    main()
