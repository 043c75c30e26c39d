"""dattri's side of the peer benchmark (runs in the dattri virtualenv).

``TracInAttributor`` with one checkpoint, weight 1 and no projection is exact grad-dot
(``normalized_grad=False``) or grad-cos (``True``); its per-example gradients are torch.func
``vmap(grad)`` of the task's loss, here airsearch's response-only loss of one right-padded example
(no attention mask, as in airsearch: right padding never changes the real positions' logits).
dattri's ``IFAttributorEKFAC`` is not run: on this HF Llama its covariance hooks saw no module input
(dattri 0.3.0, ``UnboundLocalError`` in ``func.fisher._update_covariance``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_args, load_model, response_nll, split, start, timed, write_side  # noqa: E402
from dattri.algorithm.tracin import TracInAttributor  # noqa: E402
from dattri.task import AttributionTask  # noqa: E402


def loader(tensors: dict[str, torch.Tensor], batch_size: int) -> torch.utils.data.DataLoader:
    ds = torch.utils.data.TensorDataset(tensors["input_ids"], tensors["labels"])
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def main() -> None:
    parser = base_args(__doc__)
    args, tokens, meta = start(parser)
    model = load_model(args.data)
    train, test = (
        loader(split(tokens, "train"), args.batch_size),
        loader(split(tokens, "test"), args.batch_size),
    )
    names = [m + ".weight" for m in meta["modules"]]

    def one_example_loss(params, data):
        ids, labels = data
        logits = torch.func.functional_call(model, params, (ids[None],), {"use_cache": False}).logits
        return response_nll(logits, labels[None])[0]

    task = AttributionTask(loss_func=one_example_loss, model=model, checkpoints=model.state_dict())
    ops = args.ops.split(",")
    scores, timings = {}, {}
    for kind, normalized in (("graddot", False), ("gradcos", True)):
        if kind in ops:
            att = TracInAttributor(task, torch.ones(1), normalized, projector_kwargs=None, layer_name=names)
            att.projector_kwargs = None  # the default dict is shared and mutable; None = exact gradients
            scores[kind], timings[f"score_{kind}"] = timed(lambda a=att: a.attribute(train, test))
    write_side(args.out, scores, timings, {"tool": "dattri", "threads": args.threads})


if __name__ == "__main__":
    main()
