"""Cost per attributed (query, train example) pair and storage per train example: gradient methods,
HAIF, DDA and Daunce against AirRep (encode + dot), side by side in one run on this CPU, tiny LM.

Run: ``python benchmarks/bench_methods.py [--train 32 --queries 4]``; writes
``benchmarks/results/bench_methods.{json,md}``. Every method featurises the train set and the queries
and scores all pairs; the cost per pair is that wall time / (n_train x n_queries). Storage is the
train-side vector a store keeps (float32). Daunce's time includes its K short perturbed fine-tunes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("AIRSEARCH_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from airsearch import FinetuneConfig, TinyLMConfig, build_tiny_lm, finetune, load_lm  # noqa: E402
from airsearch.data.synthetic import random_word_examples as make_examples  # noqa: E402
from airsearch.methods.dda import DDA  # noqa: E402
from airsearch.methods.haif import HAIF  # noqa: E402
from airsearch.methods.projection import Projector  # noqa: E402
from airsearch.methods.tracin import TracIn  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--lm-steps", type=int, default=100)
    ap.add_argument("--daunce-models", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
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
    kw = {"batch_size": 8, "show_progress": False}
    methods = {
        "tracin (exact grads)": lambda: TracIn([cks[-1]], **kw),
        "gradcos (JL 1024)": lambda: TracIn([cks[-1]], normalize=True, projector=Projector(1024), **kw),
        "dda (2 ckpts + base, JL 1024)": lambda: DDA(cks, base=base, projector=Projector(1024), **kw),
        "haif (exact)": lambda: HAIF(cks[-1], **kw),
        "haif-t (exact)": lambda: HAIF(cks[-1], outer=False, **kw),
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

    from airsearch.encoder import AirRepEncoder, default_encoder_path

    enc = AirRepEncoder.from_base(default_encoder_path())

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
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_methods.json").write_text(json.dumps(result, indent=2))
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
    (OUT / "bench_methods.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
