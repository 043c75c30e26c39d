"""The LDS and classification change of an int8 runtime, on the evaluation harness (``eval lds``,
``eval classify``): the rule for changing the default runtime.

The encoder is the untrained default AirRep (``base``), encoded once on torch fp32 and once on
``--runtime``/``--quantize``; everything else is the same run (gold, corpus, seed).

* LDS: the local-protocol gold of ``benchmarks/reproduce.py --scale tiny`` (its corpus, tiny LM and
  ``gold-local`` stages, run here under ``benchmarks/work/encode_lds``), each runtime's LDS with its
  cluster-bootstrap interval, and the paired difference per dev example, resampled by task x split.
* Classification (AirRep §7): the 200 held-out sample queries against the 3,000 sample rows, label =
  task; top-1 and top-5 accuracy per runtime.

The default runtime may change only if the LDS moves by less than 0.5 points (x100) with its whole
clustered interval inside +-0.5. Results go into ``encode.json`` / ``encode.md`` (section "LDS").

    python benchmarks/bench_encode_lds.py [--runtime onnx] [--quantize int8] [--scale tiny] [--out DIR]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from bench_encode import write_markdown  # noqa: E402
from bench_options import RESULTS, WORK, bench_parser  # noqa: E402
from reproduce import SCALES, Pipeline  # noqa: E402

from airsearch import (  # noqa: E402
    EvalClassifyConfig,
    EvalLdsConfig,
    eval_classify,
    eval_lds,
    load_corpus,
    load_queries,
    paired_difference,
    sample_corpus_path,
    sample_queries_path,
    write_rows,
)

RULE_POINTS = 0.5  # LDS x100


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS, work=WORK / "encode_lds", scales=list(SCALES), scale="tiny")
    ap.add_argument("--runtime", default="onnx")
    ap.add_argument("--quantize", default="int8")
    ap.add_argument("--base-encoder", default="default", help="'default' = all-MiniLM-L6-v2, or a folder")
    ap.add_argument(
        "--classify-rows", type=int, default=None, help="first N sample rows classified (default: all)"
    )
    ap.add_argument(
        "--classify-queries", type=int, default=None, help="first N sample queries (default: all)"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    work = args.work
    pipe = Pipeline(args.scale, work, args.base_encoder, None, True, protocols=("local",))
    pipe.stage("corpus", pipe.corpus)
    pipe.lm_path = pipe.stage("lm", pipe.lm)["lm"]
    pipe.stage("gold-local", lambda: pipe.gold("local"))
    runtimes = {"torch": ("torch", "none"), f"{args.runtime}-{args.quantize}": (args.runtime, args.quantize)}
    rows, queries = str(sample_corpus_path()), str(sample_queries_path())
    if args.classify_rows or args.classify_queries:
        rows = str(write_rows(work / "classify_rows.jsonl", load_corpus(rows).examples[: args.classify_rows]))
        chosen = load_queries(queries).examples[: args.classify_queries]
        queries = str(write_rows(work / "classify_queries.jsonl", chosen))
    lds, classify = {}, {}
    for name, (runtime, quantize) in runtimes.items():
        lds[name] = eval_lds(
            EvalLdsConfig(
                corpus=[str(work / "data" / "eval_train.jsonl")],
                gold=str(work / "gold_local"),
                out=str(work / "eval" / f"lds_{name}"),
                methods=("base",),
                base_encoder=pipe.base_encoder,
                bootstrap=1000,
                runtime=runtime,
                quantize=quantize,
            )
        )
        classify[name] = eval_classify(
            EvalClassifyConfig(
                corpus=[rows],
                queries=[queries],
                out=str(work / "eval" / f"classify_{name}"),
                methods=("base",),
                base_encoder=pipe.base_encoder,
                runtime=runtime,
                quantize=quantize,
            )
        )
    fp32, other = (lds[n] for n in runtimes)
    ways = fp32.clusters.ways  # resampled ways among [task, split], as eval lds resamples them
    per_query = np.array(fp32.clusters.per_query, dtype=object)
    keys = per_query[:, [1 if w == "split" else 0 for w in ways]] if ways else None
    diff = paired_difference(
        list(runtimes)[1],
        "torch",
        other.methods["base"].per_query,
        fp32.methods["base"].per_query,
        keys,
        n_resamples=1000,
        seed=0,
    )
    ci = diff.clustered
    moved = 100 * abs(ci.mean)
    inside = max(abs(100 * ci.low), abs(100 * ci.high)) < RULE_POINTS
    record = {
        "gold": fp32.gold.to_dict(),
        "clusters": fp32.clusters.ways,
        "lds": {n: r.methods["base"].lds.to_dict() for n, r in lds.items()},
        "paired": diff.to_dict(),
        "classify": {n: c.methods["base"].to_dict() for n, c in classify.items()},
        "rule": f"LDS moves < {RULE_POINTS} points (x100), clustered interval inside +-{RULE_POINTS}",
        "rule_met": bool(moved < RULE_POINTS and inside),
    }
    lines = [
        f"**LDS and classification on the evaluation harness** (`benchmarks/bench_encode_lds.py`): untrained "
        f"default encoder (`base`), local-protocol gold of the tiny reproduction ({sum(fp32.gold.n_subsets)} "
        f"subsets over splits {fp32.gold.splits}, {fp32.methods['base'].lds.n} dev examples, clusters "
        f"{' x '.join(fp32.clusters.ways) or 'examples'}); classification: 200 held-out sample queries vs the "
        "3,000 sample rows, label = task.",
        "",
        "| runtime | LDS (x100) | 95% CI (clustered) | classify top-1 | top-5 any |",
        "|---|---:|---|---:|---:|",
    ]
    for n in runtimes:
        s, c = lds[n].methods["base"].lds, classify[n].methods["base"]
        lines.append(
            f"| {n} | {100 * s.mean:.2f} | [{100 * s.low:.2f}, {100 * s.high:.2f}] | {c.top1:.3f} | {c.topk_any:.3f} |"
        )
    lines += [
        "",
        f"Paired difference {list(runtimes)[1]} - torch: {100 * ci.mean:+.2f} LDS points, 95% clustered CI "
        f"[{100 * ci.low:+.2f}, {100 * ci.high:+.2f}]. Rule ({record['rule']}): "
        f"**{'met' if record['rule_met'] else 'not met'}**.",
    ]
    record["markdown"] = "\n".join(lines)
    path = args.out / "encode.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result["lds"] = record
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    if "corpora" in result:  # else bench_encode.py writes the Markdown when it has run
        write_markdown(result, args.out)
    print(record["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
