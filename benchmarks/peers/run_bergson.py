"""Bergson's side of the peer benchmark (runs in the bergson virtualenv).

Bergson's in-memory gradient collection (``InMemoryCollector`` driven by ``CollectorComputer``, the
path its own ``benchmarks/`` times) with no random projection (``projection_dim=None``) gives the
exact per-example gradients of the tracked Linear modules, from forward hooks on their inputs and
backward hooks on their output gradients. The loss is Bergson's cross-entropy with
``loss_reduction="mean"``: per example, the mean NLL of the tokens whose label is not ``-100``, which
with airsearch's labels is airsearch's response-only loss. Grad-dot is the product of the train and
test gradient matrices; grad-cos divides by their norms. Bergson's K-FAC / EK-FAC (its ``hessians``
pipeline works on stored gradient indexes on disk) is not run here.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bergson import CollectorComputer, GradientProcessor, IndexConfig, InMemoryCollector  # noqa: E402
from common import base_args, cosine_from_dot, load_model, split, start, timed, write_side  # noqa: E402
from datasets import Dataset  # noqa: E402


def dataset(part: dict[str, torch.Tensor]) -> Dataset:
    """One row per example, cut to its real tokens (Bergson pads each batch itself)."""
    lengths = part["attention_mask"].sum(1).tolist()
    return Dataset.from_dict(
        {
            "input_ids": [ids[:n].tolist() for ids, n in zip(part["input_ids"], lengths, strict=True)],
            "labels": [lab[:n].tolist() for lab, n in zip(part["labels"], lengths, strict=True)],
            "length": lengths,
        }
    )


def gradients(model, ds: Dataset, modules: list[str], batch_size: int, run_path: str) -> torch.Tensor:
    """``[n, p]`` per-example gradients of ``modules`` (in that order), from Bergson's collector."""
    cfg = IndexConfig(run_path=run_path, loss_reduction="mean")
    Path(cfg.partial_run_path).mkdir(parents=True, exist_ok=True)  # Bergson saves a row count there
    collector = InMemoryCollector(
        model=model,
        processor=GradientProcessor(projection_dim=None),
        data=ds,
        cfg=cfg,
        target_modules=set(modules),
    )
    batches = [list(range(i, min(i + batch_size, len(ds)))) for i in range(0, len(ds), batch_size)]
    computer = CollectorComputer(model=model, data=ds, collector=collector, batches=batches, cfg=cfg)
    computer.run_with_collector_hooks(desc="bergson gradients")
    return torch.cat([collector.gradients[m].float().reshape(len(ds), -1) for m in modules], dim=1)


def main() -> None:
    parser = base_args(__doc__)
    args, tokens, meta = start(parser)
    model = load_model(args.data)
    train, test = dataset(split(tokens, "train")), dataset(split(tokens, "test"))
    modules = list(meta["modules"])
    ops = args.ops.split(",")
    scores, timings = {}, {}
    if "graddot" in ops or "gradcos" in ops:
        with tempfile.TemporaryDirectory() as tmp:

            def score() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                g_train = gradients(model, train, modules, args.batch_size, tmp + "/train").double()
                g_test = gradients(model, test, modules, args.batch_size, tmp + "/test").double()
                return g_train @ g_test.T, g_train.square().sum(1), g_test.square().sum(1)

            (dot, train_sq, test_sq), timings["score_graddot"] = timed(score)
        scores["graddot"] = dot
        if "gradcos" in ops:
            scores["gradcos"] = cosine_from_dot(dot, train_sq, test_sq)
    write_side(args.out, scores, timings, {"tool": "bergson", "threads": args.threads})


if __name__ == "__main__":
    main()
