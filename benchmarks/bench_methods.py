"""Cost per attributed (query, train example) pair and storage per train example: gradient methods,
HAIF, DDA and Daunce against AirRep (encode + dot), side by side in one run on this CPU, tiny LM.

Run: ``python benchmarks/bench_methods.py [--train 32 --queries 4] [--out DIR]``; writes
``benchmarks/results/bench_methods.{json,md}`` (or into ``--out``). Every method featurises the train set and the queries
and scores all pairs; the cost per pair is that wall time / (n_train x n_queries). Storage is the
train-side vector a store keeps (float32). Daunce's time includes its K short perturbed fine-tunes.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRSEARCH_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_options import RESULTS, bench_parser  # noqa: E402

from airsearch import (  # noqa: E402
    AirRepEncoder,
    FinetuneConfig,
    MethodConfig,
    TinyLMConfig,
    build_tiny_lm,
    finetune,
    load_lm,
    load_method,
)
from airsearch import random_word_examples as make_examples  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS)
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--lm-steps", type=int, default=100)
    ap.add_argument("--daunce-models", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train = make_examples(args.train, "tr", seed=1)
    queries = make_examples(args.queries, "q", seed=2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_methods_"))
    cfg = TinyLMConfig(
        vocab_size=1024,
        hidden_size=128,
        layers=2,
        heads=4,
        intermediate_size=256,
        steps=args.lm_steps,
        min_frequency=1,
    )
    lm_dir = build_tiny_lm(make_examples(400, seed=123), tmp / "lm", cfg, show_progress=False)
    base = load_lm(lm_dir, device="cpu", max_length=128)
    cks = []
    finetune(
        base,
        train,
        FinetuneConfig(epochs=2, lr=1e-3, batch_size=8, max_length=128),
        on_epoch_end=lambda e, lm: cks.append(lm.clone()),
        show_progress=False,
    )
    n_params = base.num_parameters()
    pairs = args.train * args.queries

    def method(name: str, proj_dim: int = 0, **models: Any) -> Any:
        """The method by name through the registry, on the models in memory (batch 8, no bar)."""
        cfg = MethodConfig(method=name, proj_dim=proj_dim, batch_size=8)
        return load_method(cfg, show_progress=False, **models)

    methods = {
        "tracin (exact grads)": lambda: method("tracin", checkpoints=[cks[-1]]),
        "gradcos (JL 1024)": lambda: method("gradcos", 1024, checkpoints=[cks[-1]]),
        "dda (2 ckpts + base, JL 1024)": lambda: method("dda", 1024, checkpoints=cks, base_lm=base),
        "haif (exact)": lambda: method("haif", lm=cks[-1]),
        "haif-t (exact)": lambda: method("haif-t", lm=cks[-1]),
    }
    rows = []
    for name, make in methods.items():
        m = make()
        _, t = timed(lambda m=m: m.score(train, queries))
        dim = m.manifest().dim
        rows.append(
            {"method": name, "seconds": t, "per_pair_ms": 1e3 * t / pairs, "bytes_per_train": 4 * dim}
        )
        print(name, round(t, 2), flush=True)

    from airsearch import DaunceConfig, run_daunce

    dcfg = DaunceConfig(models=args.daunce_models, steps=5, batch_size=8, lora_rank=4, max_length=128)

    def daunce():
        run = run_daunce(str(lm_dir), train, queries, dcfg, tmp / "daunce", quiet=True)
        return run.method().score(train, queries)

    _, t = timed(daunce)
    rows.append(
        {
            "method": f"daunce (K={args.daunce_models}, 5 steps each)",
            "seconds": t,
            "per_pair_ms": 1e3 * t / pairs,
            "bytes_per_train": 4 * args.daunce_models,
        }
    )

    enc = AirRepEncoder.from_base(None)  # the packaged default base encoder, untrained

    def airrep():
        a = torch.as_tensor(enc.encode([e for e in train]))
        b = torch.as_tensor(enc.encode([e for e in queries]))
        return a @ b.T

    try:
        scores, t = timed(airrep)
    except Exception as e:  # encoder API mismatch: record and go on
        print("airrep failed:", e)
        scores, t = None, float("nan")
    dim = scores.shape[1] if scores is not None and scores.dim() == 2 else 384
    rows.append(
        {
            "method": "AirRep (MiniLM-L6 encode + dot)",
            "seconds": t,
            "per_pair_ms": 1e3 * t / pairs,
            "bytes_per_train": 4 * 384,
        }
    )
    air = rows[-1]["per_pair_ms"]
    for r in rows:
        r["cost_vs_airrep"] = r["per_pair_ms"] / air if air == air else None
    result = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "target_lm_params": n_params,
        "n_train": args.train,
        "n_queries": args.queries,
        "rows": rows,
        "note": "one run, side by side; AirRep's encoder (22.7M) is 20x the tiny LM",
    }
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_methods.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"# Attribution cost per (query, train) pair — tiny LM ({n_params:,} params), "
        f"{args.train} train x {args.queries} queries, CPU, {torch.get_num_threads()} threads",
        "",
        "| method | total s | ms / pair | bytes / train example | cost vs AirRep |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['cost_vs_airrep']:.1f}x" if r["cost_vs_airrep"] is not None else "n/a"
        lines.append(
            f"| {r['method']} | {r['seconds']:.2f} | {r['per_pair_ms']:.2f} | "
            f"{r['bytes_per_train']:,} | {ratio} |"
        )
    (out / "bench_methods.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
