"""Shared by the airsearch side and every peer side of the peer benchmark; needs only torch,
safetensors and transformers (each peer runs in its own virtualenv without airsearch).

The data folder written by ``prepare.py`` holds:

- ``lm/``: the target LM (an ordinary HF folder);
- ``tokens.safetensors``: ``{train,test}_{input_ids,labels,attention_mask}``, right-padded, labels
  ``-100`` on prompt and padding positions (airsearch's own tokenisation, so every tool sees the
  same tokens);
- ``meta.json``: the tracked Linear modules (the parameter scope), the damping, sizes.

The loss every tool differentiates is the response-only loss of airsearch: per example, the mean
negative log-likelihood of the response tokens (``response_nll``); a batch's loss is the sum of its
examples' losses, so per-example gradients are the same whatever the batch.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def response_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[b]`` mean NLL over each example's scored tokens (position t predicts ``labels[t + 1]``)."""
    targets = labels[:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(targets.shape)
    return nll.sum(1) / (targets != -100).sum(1).clamp(min=1)


def load_data(data: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors.torch import load_file

    data = Path(data)
    return load_file(str(data / "tokens.safetensors")), json.loads((data / "meta.json").read_text())


def load_model(data: str | Path) -> Any:
    """The target LM in eval mode, float32, eager attention (as airsearch's gradient code runs it)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(Path(data) / "lm"), attn_implementation="eager")
    return model.float().eval()


def split(tokens: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    return {k[len(part) + 1 :]: v for k, v in tokens.items() if k.startswith(part + "_")}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def write_side(
    out: str | Path, scores: dict[str, torch.Tensor], timings: dict[str, float], info: dict[str, Any]
) -> None:
    """One run of one tool: ``scores.safetensors`` ([n_train, n_test] per score kind) and ``run.json``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().double().contiguous().cpu() for k, v in scores.items()},
        str(out / "scores.safetensors"),
    )
    (out / "run.json").write_text(json.dumps({"timings": timings, "info": info}, indent=2))


def cosine_from_dot(dot: torch.Tensor, train_sq: torch.Tensor, test_sq: torch.Tensor) -> torch.Tensor:
    """Grad-cos from grad-dot and the squared norms (self-influences) of both sides."""
    return dot / train_sq.clamp(min=1e-30).sqrt()[:, None] / test_sq.clamp(min=1e-30).sqrt()[None, :]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def base_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True, help="folder written by prepare.py")
    parser.add_argument("--out", required=True, help="folder for scores.safetensors and run.json")
    parser.add_argument("--ops", default="graddot,gradcos,kfac,ekfac", help="score kinds to compute")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch")
    return parser


def start(parser: Any) -> tuple[Any, dict[str, torch.Tensor], dict[str, Any]]:
    """Parse the arguments, set the torch threads and load the data folder: (args, tokens, meta)."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens, meta = load_data(args.data)
    return args, tokens, meta
