"""Training checkpoints without pickles: weights and tensors in safetensors, everything else in JSON.

A checkpoint is a folder written atomically (:func:`airsearch.atomic.atomic_path`):

- ``model.safetensors``: the encoder's full state dict;
- ``state.safetensors``: the optimiser's per-parameter tensors (``optim.<param>.<key>``) and the torch
  RNG states (``rng.torch``, ``rng.cuda.<i>``);
- ``state.json``: the optimiser's param groups, the scheduler state, the Python and NumPy RNG
  states, and the trainer's own progress record (step, history, best LDS, ...).

Loading never unpickles anything, so a checkpoint from an untrusted place cannot run code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from airsearch.atomic import atomic_path
from airsearch.errors import InputError

MODEL_FILE = "model.safetensors"
TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, py


def _set_rng_state(tensors: dict[str, torch.Tensor], py: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    version, internal, gauss = py["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = py["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, extra in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(extra)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress_record: dict[str, Any],
) -> Path:
    """Write the checkpoint folder ``path`` atomically (replacing an older one)."""
    path = Path(path)
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer)
    rng_tensors, rng_py = _rng_state()
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    state = {"optimizer": optim_meta, "scheduler": sched, "rng": rng_py, "progress": progress_record}
    with atomic_path(path, is_dir=True) as tmp:
        save_file(weights, str(tmp / MODEL_FILE))
        save_file({**optim_tensors, **rng_tensors}, str(tmp / TENSORS_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, default=_json_scalar))
    return path


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore model, optimiser, scheduler and RNG states from ``path``; returns the progress record."""
    path = Path(path)
    missing = [f for f in (MODEL_FILE, TENSORS_FILE, STATE_FILE) if not (path / f).exists()]
    if missing:
        raise InputError(f"incomplete checkpoint, missing {missing}", path=path)
    device = next(model.parameters()).device
    model.load_state_dict(load_file(str(path / MODEL_FILE), device=str(device)))
    state = json.loads((path / STATE_FILE).read_text())
    tensors = load_file(str(path / TENSORS_FILE))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    sched = scheduler.state_dict()
    sched.update(state["scheduler"])
    scheduler.load_state_dict(sched)
    _set_rng_state(tensors, state["rng"])
    return state["progress"]


def _json_scalar(o: Any) -> Any:
    if isinstance(o, torch.Tensor | np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint's JSON")
