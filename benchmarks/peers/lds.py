"""Quality of the peers: the LDS of every tool's scores on an LDS gold, in one table with airsearch's.

    python benchmarks/peers/lds.py --gold runs/gold [--corpus eval.jsonl] [--lm DIR]
        [--peers kronfluence,dattri,captum] [--max-splits N] [--out benchmarks/results/peers/lds]
        [--report-only]

1. Opens the gold (``airsearch eval gold`` output, either protocol, or a bare label store) with the
   evaluation harness's own reader; the train rows are every subset member of the splits used and
   the dev rows every split's dev set, read from the gold's label store (with ``--corpus``, the
   corpus fingerprint is checked as ``eval lds`` checks it). The LM is the one the gold records for
   gradient methods (the warm-up model under the paper protocol); ``--lm`` may name it elsewhere,
   and its weights must match the recorded fingerprint.
2. Writes one data folder (``prepare.write_data``): airsearch's tokenisation at the gold's
   ``max_length``, scope the Linear modules of the transformer blocks (``--params linear``).
3. Runs each tool's side once in its own virtualenv (``run.run_side``; ``setup_envs.sh`` makes them):
   airsearch (``run_airsearch.py``: grad-dot, grad-cos, K-FAC and EK-FAC influence and their cosines,
   EK-FAC at a fixed damping), Kronfluence (the same kinds), dattri and Captum (grad-dot, grad-cos).
   Each writes its ``[n_train, n_dev]`` score matrices.
4. Scores every (tool, kind) with the project's own LDS, ``method_lds`` of
   ``airsearch.trainers.evaluation.lds`` (group sums over each subset, Spearman per dev example
   against the gold targets, cluster bootstrap over tasks x splits), the score matrix standing in for
   a method (:class:`ScoreMatrix`), and writes ``lds.json``, ``lds.md`` and the plots of ``eval lds`` (``lds.png``,
   ``lds_per_query.png``) into ``--out``.

Working files: ``benchmarks/work/peers/lds/<gold folder name>/`` (``data/``, ``runs/<tool>/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from airsearch.trainers.evaluation.gold import open_gold
from airsearch.trainers.evaluation.lds import LdsScore, cluster_keys, dev_clusters, lds_plots, method_lds
from airsearch.trainers.evaluation.methods import Method
from airsearch.trainers.evaluation.report import fmt, markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from prepare import write_data  # noqa: E402
from run import WORK, available, run_side  # noqa: E402

from airsearch.data.example import Example  # noqa: E402

RESULTS = HERE.parents[1] / "benchmarks" / "results" / "peers" / "lds"
OPS = "graddot,gradcos,kfac,ekfac"
# table order: the score kinds the sides write (``*_cos``: the cosine in the (H + lambda)^-1 metric)
KINDS = ["graddot", "gradcos", "kfac", "kfac_cos", "ekfac", "ekfac_cos", "ekfac_fixed"]


class ScoreMatrix(Method):
    """A tool's ``[n_train, n_test]`` scores as an evaluation method (additive: group score = sum)."""

    aggregation = "sum"

    def __init__(self, name: str, scores: np.ndarray, train_ids: Sequence[str], test_ids: Sequence[str]):
        super().__init__()
        self.name = name
        self.scores = np.asarray(scores, dtype=np.float64)
        if self.scores.shape != (len(train_ids), len(test_ids)):
            raise ValueError(f"{name}: scores {self.scores.shape}, rows {len(train_ids)} x {len(test_ids)}")
        self.train_ids = list(train_ids)
        self.column = {t: j for j, t in enumerate(test_ids)}

    def _prepare(self, train: list[Example]) -> None:
        if [e.id for e in train] != self.train_ids:
            raise ValueError(f"{self.name}: the train rows differ from the scored ones")

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        cols = [self.column[e.id] for e in test]
        for start in range(0, self.scores.shape[0], block_size):
            yield start, self.scores[start : start + block_size][:, cols]


def gold_rows(
    gold: Any, max_splits: int
) -> tuple[list[Any], dict[str, Example], list[Example], list[Example]]:
    """(splits, the gold's examples by id, train rows = every subset member, dev rows), ids sorted."""
    splits = gold.store.splits()[: max_splits or None]
    if not splits:
        raise SystemExit(f"{gold.root}: the gold has no finished split")
    examples = gold.store.examples()
    train_ids = sorted({i for s in splits for m in s.members for i in m})
    dev_ids = sorted({i for s in splits for i in s.dev_ids})
    return splits, examples, [examples[i] for i in train_ids], [examples[i] for i in dev_ids]


def gold_lm(gold: Any, path: str | None) -> tuple[str, Any]:
    """The folder and loaded LM gradient methods use on this gold (its fingerprint checked)."""
    from airsearch.fingerprint import check_match
    from airsearch.lm import load_lm

    folder = path or gold.gradient_lm
    if not folder:
        raise SystemExit("the gold records no gradient LM folder; pass --lm")
    lm = load_lm(folder, device="cpu", max_length=gold.max_length)
    check_match(
        "model", gold.gradient_fingerprint, lm.fingerprint, path=gold.root, hint="The gold's gradient LM."
    )
    return folder, lm


def score_tools(
    tools: list[str], data: Path, runs: Path, threads: int, timeout: int, rerun: bool = True
) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
    """Run each tool's side once (``rerun=False``: read the runs on disk instead):
    ``{tool: ({kind: scores [n_train, n_dev]}, run.json)}``."""
    from safetensors.numpy import load_file

    out = {}
    for tool in tools:
        if rerun:
            got = run_side(tool, data, runs / tool, OPS, threads, timeout)
        else:
            got = (
                json.loads((runs / tool / "run.json").read_text())
                if (runs / tool / "run.json").exists()
                else None
            )
        if got is not None:
            out[tool] = (load_file(str(runs / tool / "scores.safetensors")), got)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gold", required=True, help="an eval gold folder (or a label store)")
    parser.add_argument("--corpus", nargs="*", default=[], help="the corpus the gold was made on (checked)")
    parser.add_argument("--lm", default=None, help="the gold's gradient LM folder (default: as recorded)")
    parser.add_argument("--peers", default="kronfluence,dattri,captum")
    parser.add_argument("--max-splits", type=int, default=0, help="use the first N splits (0: all)")
    parser.add_argument("--cluster-field", default="task", help="metadata field of the dev clusters")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per tool run")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true", help="score the runs on disk again")
    args = parser.parse_args()

    gold = open_gold(args.gold)
    if args.corpus:
        from airsearch.data.corpus import load_corpus

        gold.check_corpus(load_corpus(list(args.corpus)).fingerprint)
    splits, examples, train, dev = gold_rows(gold, args.max_splits)
    lm_dir, lm = gold_lm(gold, args.lm)
    work = WORK / "lds" / Path(args.gold).resolve().name
    meta = write_data(
        work / "data", Path(lm_dir), lm, train, dev, gold.max_length, extra={"gold": str(args.gold)}
    )
    print(f"gold {args.gold}: {len(splits)} splits, {len(train)} train x {len(dev)} dev rows, "
          f"{meta['scope_parameters']} parameters in scope", flush=True)  # fmt: skip

    tools = ["airsearch", *available(args.peers.split(","))]
    scored = score_tools(
        tools, work / "data", work / "runs", args.threads, args.timeout, not args.report_only
    )
    clusters = dev_clusters(examples, splits, args.cluster_field)
    keys = cluster_keys(clusters, args.cluster_field)
    row = {e.id: r for r, e in enumerate(train)}
    results: dict[str, LdsScore] = {}
    kinds = sorted({k for m, _ in scored.values() for k in m}, key=lambda k: (KINDS + [k]).index(k))
    for kind, tool in ((k, t) for k in kinds for t in scored if k in scored[t][0]):
        method = ScoreMatrix(
            f"{tool}:{kind}", scored[tool][0][kind], [e.id for e in train], [e.id for e in dev]
        )
        method.prepare(train)
        results[method.name] = method_lds(
            method, splits, examples, row, keys, aggregation="sum", n_resamples=args.bootstrap
        )
    write_results(Path(args.out), args, gold, meta, clusters, scored, results)


def write_results(
    out: Path, args: Any, gold: Any, meta: dict, clusters: Any, scored: dict, results: dict[str, LdsScore]
) -> None:
    by = " x ".join(f"{w} ({clusters.n_clusters[w]})" for w in clusters.ways) or "examples"
    rows = [
        [name.split(":")[0], name.split(":")[1], fmt(r.lds.mean, 2, 100),
         f"[{fmt(r.lds.low, 2, 100)}, {fmt(r.lds.high, 2, 100)}]", r.lds.n]
        for name, r in results.items()
    ]  # fmt: skip
    table = markdown_table(["tool", "scores", "LDS (x100)", f"95% CI, resampling {by}", "dev examples"], rows)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "gold": {"path": str(args.gold), "protocol": gold.protocol, "max_length": gold.max_length},
        "data": {k: meta[k] for k in ("lm_source", "n_train", "n_test", "scope_parameters", "modules")},
        "clusters": clusters.to_dict(),
        "timings": {tool: run["timings"] for tool, (_, run) in scored.items()},
        "methods": {name: r.to_dict() for name, r in results.items()},
        "table": table,
    }
    (out / "lds.json").write_text(json.dumps(record, indent=2))
    (out / "lds.md").write_text(
        f"# LDS of airsearch and the peers on `{args.gold}` ({gold.protocol} protocol)\n\n{table}\n"
    )
    lds_plots(out, results)
    print(table)


if __name__ == "__main__":
    main()
