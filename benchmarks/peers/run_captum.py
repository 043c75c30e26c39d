"""Captum's side of the peer benchmark (runs in the captum virtualenv).

``TracInCP`` with one checkpoint (the loaded weights, learning rate 1) is grad-dot on the given
layers; the loss is airsearch's response-only loss with no reduction (``sample_wise_grads_per_batch
=False``: Captum takes one backward pass per example). Grad-cos comes from grad-dot and the
self-influences (squared gradient norms) of both sides.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captum.influence import TracInCP  # noqa: E402
from common import base_args, cosine_from_dot, load_model, response_nll, split, start, timed, write_side  # noqa: E402


class LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def main() -> None:
    parser = base_args(__doc__)
    args, tokens, meta = start(parser)
    model = LogitsOnly(load_model(args.data)).eval()
    train, test = split(tokens, "train"), split(tokens, "test")
    train_ds = torch.utils.data.TensorDataset(train["input_ids"], train["labels"])
    tracin = TracInCP(
        model,
        train_ds,
        checkpoints=["loaded-weights"],
        checkpoints_load_func=lambda m, path: 1.0,
        layers=["model." + m for m in meta["modules"]],
        loss_fn=response_nll,
        batch_size=args.batch_size,
        sample_wise_grads_per_batch=False,
    )
    ops = args.ops.split(",")
    scores, timings = {}, {}
    if "graddot" in ops or "gradcos" in ops:
        dot, timings["score_graddot"] = timed(
            lambda: tracin.influence((test["input_ids"], test["labels"]), k=None).T.double()
        )
        scores["graddot"] = dot
        if "gradcos" in ops:
            train_sq = tracin.self_influence(None).double()
            test_sq = tracin.self_influence((test["input_ids"], test["labels"])).double()
            scores["gradcos"] = cosine_from_dot(dot, train_sq, test_sq)
    write_side(args.out, scores, timings, {"tool": "captum", "threads": args.threads})


if __name__ == "__main__":
    main()
