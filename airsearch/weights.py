"""Model folders load safetensors weights only: a pickle (``pytorch_model.bin``) can run code when
it is loaded, so a folder whose weights are only pickles is refused before any loader sees it.

:func:`require_safetensors` checks an HF model folder (the target LM, checkpoints, a base encoder)
or a sentence-transformers folder (every module listed in ``modules.json``: the transformer and, for
AirRep, the Dense projection), and says how to convert the pickle once, on a machine the user trusts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airsearch.errors import InputError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_WEIGHTS = "model.safetensors"  # the name sentence-transformers modules read


def convert_command(pickle_file: Path) -> str:
    """A one-line command that rewrites ``pickle_file`` as ``model.safetensors`` beside it."""
    out = pickle_file.with_name(SAFE_WEIGHTS)
    return (
        'python -c "import torch, safetensors.torch as st; st.save_file({k: v.contiguous().clone() '
        f"for k, v in torch.load('{pickle_file}', weights_only=True).items()}}, '{out}')\""
    )


def _module_dirs(folder: Path) -> list[tuple[Path, bool]]:
    """``(folder, holds the main weights)`` for the folder and each sentence-transformers module."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return [(folder, True)]
    try:
        modules = json.loads(modules_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"unreadable modules.json: {e}", path=modules_file) from None
    out = []
    for m in modules if isinstance(modules, list) else []:
        path = folder / str(m.get("path", "")) if isinstance(m, dict) else folder
        out.append((path, isinstance(m, dict) and str(m.get("type", "")).endswith("Transformer")))
    return out or [(folder, True)]


def require_safetensors(folder: str | os.PathLike, *, field: str | None = None) -> None:
    """Refuse a local model folder whose weights are not safetensors (checked before any loading).

    A folder (or sentence-transformers module folder) that holds a pickle weight file and no
    safetensors file is refused, naming the file and the command that converts it; the folder of the
    main model must hold safetensors weights. ``field`` is the config field that named the folder.
    """
    folder = Path(folder)
    for part, main in _module_dirs(folder):
        if not part.is_dir():
            continue
        pickles = sorted(p for p in part.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
        safe = (part / SAFE_WEIGHTS).is_file() or (main and any(part.glob("*.safetensors")))
        if pickles and not safe:
            raise InputError(
                f"the weights here are only a pickle ({pickles[0].name}), which airsearch never loads "
                f"(unpickling can run code); convert it once, if you trust it: {convert_command(pickles[0])}",
                path=part,
                field=field,
            )
        if main and not safe:
            raise InputError("no model weights here (no *.safetensors file)", path=part, field=field)


def refuse_remote_code(folder: str | os.PathLike, *, trust_remote_code: bool = False) -> None:
    """Refuse a model folder whose ``config.json`` (or a sentence-transformers module's) maps its classes
    to Python files it ships (``auto_map``): loading it would run that code, and ``trust_remote_code``
    is off unless asked for."""
    if trust_remote_code:
        return
    root = Path(folder)
    for config in [root / "config.json", root / "tokenizer_config.json", *root.glob("*/config.json")]:
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            raise InputError(
                f"{config.relative_to(root)} maps the model to Python code shipped in the folder "
                "('auto_map'); airsearch does not run code from model folders (trust_remote_code is off)",
                path=folder,
            )
