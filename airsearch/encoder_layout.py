"""Which files of an encoder folder hold what: the published AirRep layout, the sentence-transformers
layout, or a plain transformers folder (read from the JSON files only; no heavy import here).

* **airrep**: ``config.json`` with ``"model_type": "airrep"`` (a BERT config), weights ``bert.*``
  (no pooler) and ``projector.weight``/``projector.bias`` in the ``*.safetensors`` beside it, and the
  tokenizer files (the format of the released ``sunweiwei/AirRep-Flan-Small``).
* **sentence-transformers**: ``modules.json`` lists a Transformer (its folder holds ``config.json``,
  the weights and the tokenizer), a Pooling and, for an AirRep, a Dense projection (``linear.*``).
* **transformers**: a model folder (``config.json`` + weights); a task model's weights may carry the
  base-model prefix (``bert.embeddings...`` beside a ``cls.*`` head, which is not the encoder).

:func:`write_st_layout` writes the sentence-transformers files of an AirRep folder (what
``SentenceTransformer(folder)`` reads), :func:`save_st_folder` the whole folder with its weights,
:func:`airrep_config` the published ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airsearch.errors import InputError
from airsearch.weights import require_safetensors

AIRREP_MODEL_TYPE = "airrep"
AIRREP_ARCHITECTURE = "AirRepModel"
AIRREP_PREFIX = "bert."
PROJECTOR_PREFIX = "projector."
DENSE_PREFIX = "linear."
# the names a sentence-transformers AirRep gave its weights (encoder fingerprints use them)
LEGACY_TRANSFORMER, LEGACY_DENSE = "0.model.", "2.linear."
IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity")


@dataclass
class FolderLayout:
    """Where an encoder folder keeps its config, weights, tokenizer and projection."""

    root: Path
    kind: str  # "airrep", "sentence-transformers" or "transformers"
    config: dict[str, Any]
    transformer_dir: Path
    weights_files: list[Path]
    transformer_prefix: str = ""  # the prefix of the encoder's weight names in weights_files
    dense_file: Path | None = None  # sentence-transformers Dense weights (``linear.*``)
    dense_config: dict[str, Any] = field(default_factory=dict)
    pooling: str | None = None  # the sentence-transformers pooling mode, when the folder has one

    @property
    def projector_prefix(self) -> str:
        return PROJECTOR_PREFIX if self.kind == AIRREP_MODEL_TYPE else DENSE_PREFIX


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"unreadable {path.name}: {' '.join(str(e).split())}", path=path) from None


def _safetensors(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_json(index).get("weight_map", {}).values()))
        return [folder / s for s in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else sorted(folder.glob("*.safetensors"))


def read_layout(root: Path) -> FolderLayout:
    """The layout of the encoder folder ``root`` (refused, naming why, when it is none of the three)."""
    require_safetensors(root, field="encoder")
    kind, transformer_dir, dense_file, dense_config, pooling = "transformers", root, None, {}, None
    modules_file = root / "modules.json"
    if modules_file.is_file() and not _is_airrep(root):
        kind = "sentence-transformers"
        modules = _json(modules_file)
        for m in modules if isinstance(modules, list) else []:
            kind_name, path = str(m.get("type", "")), root / str(m.get("path", ""))
            if kind_name.endswith("Transformer"):
                transformer_dir = path
            elif kind_name.endswith("Dense"):
                dense_file, dense_config = path / "model.safetensors", _json(path / "config.json")
            elif kind_name.endswith("Pooling") and (path / "config.json").is_file():
                pooling = pooling_mode(_json(path / "config.json"))
    config_file = transformer_dir / "config.json"
    if not config_file.is_file():
        raise InputError("not an encoder folder: no config.json", path=transformer_dir, field="encoder")
    config = _json(config_file)
    if config.get("model_type") == AIRREP_MODEL_TYPE:
        kind = AIRREP_MODEL_TYPE
    files = _safetensors(transformer_dir)
    if not files:
        raise InputError(
            "no model weights here (no *.safetensors file)", path=transformer_dir, field="encoder"
        )
    prefix = AIRREP_PREFIX if kind == AIRREP_MODEL_TYPE else _base_prefix(files)
    if dense_file is not None and not dense_file.is_file():
        raise InputError(
            "the Dense projection has no model.safetensors", path=dense_file.parent, field="encoder"
        )
    return FolderLayout(root, kind, config, transformer_dir, files, prefix, dense_file, dense_config, pooling)


def _is_airrep(root: Path) -> bool:
    config = root / "config.json"
    return config.is_file() and _json(config).get("model_type") == AIRREP_MODEL_TYPE


def _base_prefix(files: list[Path]) -> str:
    """``"bert."`` when a task model stores its encoder under the base-model name, else ``""``."""
    from safetensors import safe_open

    keys: list[str] = []
    for f in files:
        with safe_open(str(f), "pt") as handle:
            keys.extend(handle.keys())
    if any(k.startswith("embeddings.") for k in keys):
        return ""
    heads = {k.split(".", 1)[0] for k in keys if k.split(".", 2)[1:2] == ["embeddings"]}
    return f"{sorted(heads)[0]}." if len(heads) == 1 else ""


def pooling_mode(config: dict[str, Any]) -> str:
    """``mean``, ``cls`` ... from a sentence-transformers Pooling config (old or new style)."""
    if "pooling_mode" in config:
        return str(config["pooling_mode"])
    for mode in ("mean", "cls", "max", "mean_sqrt_len", "weightedmean", "lasttoken"):
        if config.get(f"pooling_mode_{mode}_tokens") or config.get(f"pooling_mode_{mode}_token"):
            return mode
    return "unknown"


def read_weights(files: list[Path]) -> dict[str, Any]:
    """Every tensor in the safetensors ``files`` (as stored; the caller casts)."""
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except Exception as e:  # a truncated or foreign file: safetensors raises its own error types
            raise InputError(f"unreadable weights: {' '.join(str(e).split())[:200]}", path=f) from None
    return out


def airrep_config(config: dict[str, Any]) -> dict[str, Any]:
    """The published ``config.json`` of an AirRep on the BERT config ``config``."""
    if config.get("model_type") not in ("bert", AIRREP_MODEL_TYPE):
        raise InputError(
            f"the published AirRep format holds a BERT encoder; this one is '{config.get('model_type')}'",
            field="encoder",
        )
    drop = ("_name_or_path", "auto_map", "transformers_version")
    out = {k: v for k, v in config.items() if k not in drop}
    return {
        **out,
        "model_type": AIRREP_MODEL_TYPE,
        "architectures": [AIRREP_ARCHITECTURE],
        "dtype": "float32",
    }


def write_st_layout(root: Path, *, hidden: int, dim: int, max_seq_length: int) -> None:
    """The sentence-transformers files of an AirRep folder (Transformer at the root, mean Pooling,
    Identity Dense in ``2_Dense``), in the format every sentence-transformers version reads."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    pooling = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False}
    pooling.update({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False})
    pooling.update({"pooling_mode_mean_sqrt_len_tokens": False})
    dense = {"in_features": hidden, "out_features": dim, "bias": True, "activation_function": IDENTITY[0]}
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
        "1_Pooling/config.json": pooling,
        "2_Dense/config.json": dense,
    }
    for name, obj in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(obj, indent=2) + "\n")


def float_tensors(module: object, prefix: str, skip: tuple[str, ...] = ()) -> dict:
    """``module``'s state dict as contiguous fp32 CPU copies, keys prefixed, ``skip`` prefixes left out."""
    return {
        prefix + k: v.detach().float().cpu().contiguous().clone()
        for k, v in module.state_dict().items()  # type: ignore[attr-defined]
        if not k.startswith(skip)
    }


def save_st_folder(net: object, path: Path, *, max_seq_length: int) -> None:
    """``net`` (:class:`~airsearch.encoder_model.AirRepNet`) as a sentence-transformers folder: the
    transformer at the root (``config.json``, ``model.safetensors``, tokenizer), ``1_Pooling`` (mean)
    and ``2_Dense`` (``linear.weight``/``linear.bias``)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    bert, projector = net.bert, net.projector  # type: ignore[attr-defined]
    save_file(float_tensors(bert, ""), str(path / "model.safetensors"), metadata={"format": "pt"})
    bert.config.to_json_file(str(path / "config.json"))
    net.tokenizer.save_pretrained(str(path))  # type: ignore[attr-defined]
    write_st_layout(
        path, hidden=projector.in_features, dim=projector.out_features, max_seq_length=max_seq_length
    )
    save_file(
        float_tensors(projector, DENSE_PREFIX),
        str(path / "2_Dense" / "model.safetensors"),
        metadata={"format": "pt"},
    )
