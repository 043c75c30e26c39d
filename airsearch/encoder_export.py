"""Writing an AirRep encoder in the published AirRep format (:func:`export_airrep`) that the authors'
code and other tools load (the sentence-transformers folder airsearch saves is
:func:`airsearch.encoder_layout.save_st_folder`).

The published format (the layout of the released ``sunweiwei/AirRep-Flan-Small``): ``config.json``
is the BERT config with ``"model_type": "airrep"`` and ``"architectures": ["AirRepModel"]``; the
weights are ``bert.*`` (a ``BertModel`` without its pooling layer) and ``projector.weight`` /
``projector.bias`` (``Linear(hidden, hidden)``); the tokenizer files sit beside them. The release
stores the projector in bf16; the export keeps every weight in fp32, so that loading the export gives
the same vectors (the published loader casts to whatever dtype it is asked for).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from airsearch.atomic import atomic_path
from airsearch.config import CommandConfig, require
from airsearch.encoder_layout import AIRREP_PREFIX, PROJECTOR_PREFIX, airrep_config, float_tensors
from airsearch.errors import InputError


@dataclass
class ExportConfig(CommandConfig):
    """``airsearch encoder export``: an airsearch encoder written in the published AirRep format."""

    encoder: str = field(metadata={"help": "encoder folder (or short name / hub id) to export"})
    out: str = field(metadata={"help": "output folder (published AirRep format)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a non-empty output folder"})

    def validate(self) -> None:
        require(bool(self.encoder), "encoder", "is required (the encoder folder to export)")
        require(bool(self.out), "out", "is required (the folder to write)")


@dataclass
class ExportSummary:
    """What :func:`export_airrep` wrote."""

    out: str
    source: str
    fingerprint: (
        str  # the exported folder's encoder fingerprint (no pooler: it differs from a folder with one)
    )
    weights: int
    dropped: list[str]  # weights of the source that the published format has no place for (the pooler)

    def to_dict(self) -> dict:
        return asdict(self)


def export_airrep(cfg: ExportConfig) -> ExportSummary:
    """Write the airsearch encoder ``cfg.encoder`` (a folder, short name or hub id) to ``cfg.out`` in
    the published AirRep format, plus ``airsearch_encoder.json`` so that airsearch keeps its template,
    input rule and training record. Loading the output gives the same vectors as the source (checked
    before the folder is put in place)."""
    source, out = cfg.encoder, Path(cfg.out)
    if out.is_file():
        raise InputError("the output must be a folder, not a file", path=out, field="out")
    if out.exists() and not cfg.overwrite and any(out.iterdir()):
        raise InputError(
            "the output folder exists and is not empty (pass --overwrite)", path=out, field="out"
        )
    from safetensors.torch import save_file

    from airsearch.encoder import ENCODER_INFO_FILE, AirRepEncoder

    enc = AirRepEncoder.load(source, device="cpu")
    net = enc.model
    if net.projector.in_features != net.projector.out_features:
        raise InputError("the published AirRep format needs a hidden -> hidden projection", path=source)
    config = airrep_config(net.bert.config.to_dict())
    weights = float_tensors(net.bert, AIRREP_PREFIX, skip=("pooler.",)) | float_tensors(
        net.projector, PROJECTOR_PREFIX
    )
    dropped = sorted(AIRREP_PREFIX + k for k in net.bert.state_dict() if k.startswith("pooler."))
    with atomic_path(out, is_dir=True) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        net.tokenizer.save_pretrained(str(tmp))
        info_file = tmp / ENCODER_INFO_FILE
        info_file.write_text(json.dumps(asdict(enc.info), indent=2) + "\n")
        exported = AirRepEncoder.load(tmp, device="cpu")  # the round trip, before the folder is in place
        _check_same_vectors(enc, exported)
        info = {**asdict(enc.info), "fingerprint": exported.weights_fingerprint}
        info_file.write_text(json.dumps(info, indent=2) + "\n")
    return ExportSummary(str(out), str(source), info["fingerprint"], len(weights), dropped)


def _check_same_vectors(a: object, b: object) -> None:
    """Refuse an export whose vectors differ from the source's (1e-5 relative) on a few rows."""
    import numpy as np

    from airsearch.data.example import Example

    rows = [Example("a", "What is the capital of France?", "Paris."), Example("b", "", "ok " * 40)]
    va, vb = a.encode(rows, show_progress=False), b.encode(rows, show_progress=False)  # type: ignore[attr-defined]
    if not np.allclose(vb, va, rtol=1e-5, atol=1e-5 * float(np.abs(va).max())):
        raise InputError("the exported encoder does not reproduce the source's vectors; nothing was written")
