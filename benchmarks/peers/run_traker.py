"""TRAK's side of the peer benchmark (runs in the traker virtualenv).

TRAK is not grad-dot: it projects per-example gradients of a model output function (here
``f(z) = -L(z)``, airsearch's response-only loss, with a unit out-to-loss factor) to ``--proj-dim``
dimensions with a seeded Rademacher matrix (``BasicProjector``; the CUDA projector is not available
on CPU) and scores with the projected Gauss-Newton kernel, ``phi_q (Phi^T Phi)^-1 Phi^T``. Its scores
(``trak``) are compared with airsearch's grad-dot and EK-FAC influence for context only: the
estimators differ.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, load_model, response_nll, split, start, timed, write_side  # noqa: E402
from trak import TRAKer  # noqa: E402
from trak.modelout_functions import AbstractModelOutput  # noqa: E402
from trak.projectors import BasicProjector, ProjectionType  # noqa: E402


class NegativeResponseLoss(AbstractModelOutput):
    """``f(z) = -L(z)``; the out-to-loss factor is 1 (``L = -f``)."""

    def __init__(self) -> None:
        super().__init__()

    @staticmethod
    def get_output(model, weights, buffers, input_ids, labels) -> torch.Tensor:
        kwargs = {"input_ids": input_ids[None], "use_cache": False}
        logits = torch.func.functional_call(model, (weights, buffers), args=(), kwargs=kwargs).logits
        return -response_nll(logits, labels[None]).sum()

    def get_out_to_loss_grad(self, model, weights, buffers, batch) -> torch.Tensor:
        return torch.ones(batch[0].shape[0], 1)


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--proj-dim", type=int, default=512)
    args, tokens, meta = start(parser)
    model = load_model(args.data)
    train, test = split(tokens, "train"), split(tokens, "test")
    names = [m + ".weight" for m in meta["modules"]]
    grad_dim = sum(p.numel() for n, p in model.named_parameters() if n in names)
    timings, scores = {}, {}

    def run() -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            projector = BasicProjector(grad_dim, args.proj_dim, 0, ProjectionType.rademacher, "cpu", 32)
            traker = TRAKer(
                model,
                NegativeResponseLoss(),
                train["input_ids"].shape[0],
                save_dir=tmp,
                device="cpu",
                projector=projector,
                proj_dim=args.proj_dim,
                use_half_precision=False,
                grad_wrt=names,
                logging_level=logging.ERROR,
            )
            traker.load_checkpoint(model.state_dict(), model_id=0)
            for s in range(0, train["input_ids"].shape[0], args.batch_size):
                batch = [
                    train["input_ids"][s : s + args.batch_size],
                    train["labels"][s : s + args.batch_size],
                ]
                traker.featurize(batch=batch, num_samples=batch[0].shape[0])
            traker.finalize_features()
            traker.start_scoring_checkpoint(
                "bench", model.state_dict(), model_id=0, num_targets=test["input_ids"].shape[0]
            )
            traker.score(batch=[test["input_ids"], test["labels"]], num_samples=test["input_ids"].shape[0])
            return torch.as_tensor(traker.finalize_scores("bench")).double()

    scores["trak"], timings["score_trak"] = timed(run)
    write_side(
        args.out, scores, timings, {"tool": "traker", "threads": args.threads, "proj_dim": args.proj_dim}
    )


if __name__ == "__main__":
    main()
