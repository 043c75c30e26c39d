"""Kronfluence's side of the peer benchmark (runs in the kronfluence virtualenv).

A Kronfluence ``Task`` whose train loss and measurement are airsearch's response-only loss
(``common.response_nll``, summed over the batch), tracking exactly the modules of ``meta.json``.
Strategies: ``identity`` (grad-dot; grad-cos from it and the self-influences), ``kfac`` and
``ekfac`` with the empirical Fisher (``use_empirical_fisher=True``: targets are the data, as in
airsearch's ``--fisher empirical``) and the given damping (``None``: Kronfluence's heuristic,
0.1 x mean eigenvalue per module, the same rule as airsearch's default).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, cosine_from_dot, load_model, response_nll, split, start, timed, write_side  # noqa: E402
from kronfluence.analyzer import Analyzer, prepare_model  # noqa: E402
from kronfluence.arguments import FactorArguments, ScoreArguments  # noqa: E402
from kronfluence.task import Task  # noqa: E402


class Rows(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.t = tensors

    def __len__(self) -> int:
        return self.t["input_ids"].shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.t.items()}


class ResponseLossTask(Task):
    def __init__(self, modules: list[str]) -> None:
        super().__init__()
        self.modules = modules

    def compute_train_loss(self, batch, model, sample: bool = False) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return response_nll(logits, batch["labels"]).sum()

    def compute_measurement(self, batch, model) -> torch.Tensor:
        return self.compute_train_loss(batch, model)

    def get_influence_tracked_modules(self) -> list[str]:
        return self.modules

    def get_attention_mask(self, batch) -> torch.Tensor:
        return batch["attention_mask"]


def main() -> None:
    parser = base_args(__doc__)
    parser.add_argument("--damping", type=float, default=None)
    parser.add_argument("--fixed-damping", type=float, default=1e-3, help="damping of the ekfac_fixed scores")
    args, tokens, meta = start(parser)
    logging.disable(logging.WARNING)
    train, test = Rows(split(tokens, "train")), Rows(split(tokens, "test"))
    task = ResponseLossTask(meta["modules"])
    model = prepare_model(load_model(args.data), task)
    ops = args.ops.split(",")
    scores, timings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        analyzer = Analyzer("bench", model=model, task=task, output_dir=tmp, cpu=True, disable_tqdm=True)
        bs = {"per_device_query_batch_size": args.batch_size, "per_device_train_batch_size": args.batch_size}
        for strategy in ("identity", "kfac", "ekfac"):
            name = "graddot" if strategy == "identity" else strategy
            if name not in ops and not (strategy == "identity" and "gradcos" in ops):
                continue
            fargs = FactorArguments(strategy=strategy, use_empirical_fisher=True)
            _, fit_s = timed(
                lambda s=strategy, f=fargs: analyzer.fit_all_factors(
                    s,
                    dataset=train,
                    per_device_batch_size=args.batch_size,
                    factor_args=f,
                    overwrite_output_dir=True,
                )
            )
            if strategy != "identity":
                timings[f"fit_{strategy}"] = fit_s
            sargs = ScoreArguments(damping_factor=args.damping)
            _, timings[f"score_{name}"] = timed(
                lambda s=strategy, a=sargs: analyzer.compute_pairwise_scores(
                    f"pair_{s}",
                    s,
                    query_dataset=test,
                    train_dataset=train,
                    score_args=a,
                    overwrite_output_dir=True,
                    **bs,
                )
            )
            dot = analyzer.load_pairwise_scores(f"pair_{strategy}")["all_modules"].T.double()
            selfs = []
            for part, data in (("train", train), ("test", test)):
                analyzer.compute_self_scores(
                    f"self_{strategy}_{part}",
                    strategy,
                    train_dataset=data,
                    per_device_train_batch_size=args.batch_size,
                    score_args=sargs,
                    overwrite_output_dir=True,
                )
                selfs.append(analyzer.load_self_scores(f"self_{strategy}_{part}")["all_modules"].double())
            scores[name] = dot
            if strategy == "ekfac":
                fixed = ScoreArguments(damping_factor=args.fixed_damping)
                analyzer.compute_pairwise_scores(
                    "pair_fixed",
                    strategy,
                    query_dataset=test,
                    train_dataset=train,
                    score_args=fixed,
                    overwrite_output_dir=True,
                    **bs,
                )
                scores["ekfac_fixed"] = analyzer.load_pairwise_scores("pair_fixed")["all_modules"].T.double()
            scores["gradcos" if strategy == "identity" else f"{strategy}_cos"] = cosine_from_dot(dot, *selfs)
    write_side(args.out, scores, timings, {"tool": "kronfluence", "threads": args.threads})


if __name__ == "__main__":
    main()
