"""The AirRep encoder: a BERT-family encoder, mean pooling, and a linear projection (AirRep §3.1).

The projection is hidden -> hidden and initialised to the identity with a zero bias [methods.md D],
so an untrained AirRep gives the base encoder's mean-pooled states. The model is saved as an ordinary
sentence-transformers folder (Transformer, Pooling, Dense), so ``SentenceTransformer(path)`` loads it,
plus ``airsearch_encoder.json`` recording the base encoder, dimension, template, the input rule and a
fingerprint of the weights and that rule.

**Input rule** (:data:`INPUT_RULE`, docs/methods.md §1). The encoder input is the AirRep template
``[CLS] "Question: " prompt "\nAnswer: " response [SEP]``, built as token ids within
``max_seq_length``: the template markers and the response are placed first, and the prompt gets the
tokens that are left, keeping its *last* tokens (the official AirRep code keeps
``input_ids[-max_len:]``). The answer therefore always survives; a response longer than the whole
budget keeps its beginning. Indexing, queries and encoder training all go through
:meth:`AirRepEncoder.input_ids`.

**Runtimes** (:mod:`airsearch.runtime`). :meth:`AirRepEncoder.use_runtime` runs inference on an
exported copy (ONNX Runtime or OpenVINO, fp32 or int8; :mod:`airsearch.compiled`) instead of torch;
:meth:`~AirRepEncoder.encode` then goes through it, while the differentiable paths
(:meth:`~AirRepEncoder.forward_ids`, training, token explanations) stay on torch. A non-torch runtime
is part of :attr:`~AirRepEncoder.fingerprint`, so an index records which runtime made its vectors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airsearch.data.example import AIRREP_PROMPT_WORDS, ANSWER_PREFIX, QUESTION_PREFIX, Example, airrep_text
from airsearch.encoder_inputs import INPUT_RULE as INPUT_RULE
from airsearch.encoder_inputs import LEGACY_INPUT_RULE as LEGACY_INPUT_RULE
from airsearch.encoder_inputs import EncoderInput as EncoderInput
from airsearch.encoder_inputs import TemplateTokens, template_input_ids
from airsearch.encoder_inputs import budget_input as budget_input
from airsearch.encoder_layout import AIRREP_MODEL_TYPE, read_layout, save_st_folder
from airsearch.encoder_model import AirRepNet, load_net
from airsearch.encoder_source import DEFAULT_ENCODER as DEFAULT_ENCODER
from airsearch.encoder_source import auto_device, encoder_folder
from airsearch.encoder_source import default_encoder_path as default_encoder_path
from airsearch.encoder_source import resolve_encoder_source as resolve_encoder_source
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_json, fingerprint_state_dict
from airsearch.progress import progress, quiet_default
from airsearch.runtime import DEFAULT_QUANTIZE, DEFAULT_RUNTIME, check_runtime, runtime_label

ENCODER_INFO_FILE = "airsearch_encoder.json"
MAX_SEQ_LENGTH = 512
TEMPLATE_NAME = "airrep-question-answer-v1"


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
    input_rule: str = INPUT_RULE


class AirRepEncoder:
    """Encodes examples into AirRep vectors. Wraps an :class:`~airsearch.encoder_model.AirRepNet`
    (``.model``: transformers encoder, mean pooling, projection; its ``.tokenizer``)."""

    def __init__(self, model: AirRepNet, info: EncoderInfo) -> None:
        self.model = model
        self.info = info
        self._fingerprint: str | None = None
        self.runtime, self.quantize = DEFAULT_RUNTIME, DEFAULT_QUANTIZE
        self._compiled: Any = None  # airsearch.compiled.CompiledEncoder for onnx / openvino

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
        folder = encoder_folder(resolve_encoder_source(base))
        model = load_net(
            read_layout(folder), device=device or "cpu", trust_remote_code=trust_remote_code, base_only=True
        )
        hidden = model.hidden_size
        limit = getattr(model.bert.config, "max_position_embeddings", max_seq_length)
        model.to(device or auto_device())
        base_name = "default:all-MiniLM-L6-v2" if base in (None, DEFAULT_ENCODER) else str(base)
        info = EncoderInfo(base_encoder=base_name, dim=hidden, max_seq_length=min(max_seq_length, limit))
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
        runtime: str = DEFAULT_RUNTIME,
        quantize: str = DEFAULT_QUANTIZE,
    ) -> AirRepEncoder:
        """Load a saved AirRep folder; a plain base encoder (or ``None``) gives an untrained AirRep.
        ``runtime``/``quantize`` choose the inference runtime (:meth:`use_runtime`)."""
        check_runtime(runtime, quantize)  # before the heavy load
        folder = encoder_folder(resolve_encoder_source(path))
        info_path = folder / ENCODER_INFO_FILE
        layout = read_layout(folder)
        if not info_path.exists() and layout.kind != AIRREP_MODEL_TYPE:
            enc = cls.from_base(path, device=device, trust_remote_code=trust_remote_code)
            return enc.use_runtime(runtime, quantize)
        info = _read_info(info_path) if info_path.exists() else None
        model = load_net(layout, device=device or auto_device(), trust_remote_code=trust_remote_code)
        if info is None:  # a published AirRep: trained, and encoded with airsearch's input rule
            limit = int(layout.config.get("max_position_embeddings", MAX_SEQ_LENGTH))
            info = EncoderInfo(
                base_encoder=str(path),
                dim=int(model.projector.out_features),
                max_seq_length=min(MAX_SEQ_LENGTH, limit),
                trained=True,
                training={"source": "published AirRep checkpoint"},
            )
        if info.dim != model.projector.out_features:
            raise InputError(
                f"{ENCODER_INFO_FILE} says dim {info.dim}, the projection makes {model.projector.out_features}",
                path=folder,
            )
        return cls(model, info).use_runtime(runtime, quantize)

    def use_runtime(self, runtime: str = DEFAULT_RUNTIME, quantize: str = DEFAULT_QUANTIZE) -> AirRepEncoder:
        """Encode with ``runtime`` (torch, onnx, openvino) at ``quantize`` (none, int8) from now on;
        the export is built on first use and cached (:func:`airsearch.compiled.compile_encoder`).
        Returns ``self``."""
        check_runtime(runtime, quantize)
        compiled = None
        if runtime != DEFAULT_RUNTIME:
            from airsearch.compiled import compile_encoder

            probe = [Example("a", "What is the capital of France?", "Paris."), Example("b", "", "ok")]
            compiled = compile_encoder(
                self.model,
                fingerprint=self.weights_fingerprint,
                runtime=runtime,
                quantize=quantize,
                check_ids=[list(x) for x in self.input_ids(probe)],
            )
        self.runtime, self.quantize, self._compiled = runtime, quantize, compiled
        self._fingerprint = None
        return self

    @property
    def runtime_label(self) -> str:
        """``torch``, ``onnx``, ``onnx-int8``, ``openvino`` or ``openvino-int8``."""
        return runtime_label(self.runtime, self.quantize)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the encoder as a sentence-transformers folder (``SentenceTransformer(path)`` loads it)
        plus ``airsearch_encoder.json``; :func:`airsearch.encoder_export.export_airrep` writes the
        published AirRep format."""
        path = Path(path)
        self.info.fingerprint = self.weights_fingerprint
        save_st_folder(self.model, path, max_seq_length=self.info.max_seq_length)
        (path / ENCODER_INFO_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return path

    # ----------------------------------------------------------------- identity
    @property
    def dim(self) -> int:
        return self.info.dim

    @property
    def weights_fingerprint(self) -> str:
        """Fingerprint of the weights and the input rule: what a saved encoder records.

        Two encoders with equal weights but a different input rule, sequence length or prompt word cap
        make different vectors, so they have different fingerprints.
        """
        weights = fingerprint_state_dict(self.model.legacy_state_dict())
        inputs = f"{self.info.input_rule}|{self.info.max_seq_length}|{self.info.max_prompt_words}"
        return fingerprint_json({"weights": weights, "inputs": inputs})

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the vectors this encoder makes: :attr:`weights_fingerprint`, plus the runtime
        when it is not torch (recomputed after :meth:`invalidate_fingerprint`)."""
        if self._fingerprint is None:
            weights = self.weights_fingerprint
            if self.runtime == DEFAULT_RUNTIME:
                self._fingerprint = weights
            else:
                from airsearch.compiled import EXPORT_FORMAT

                runtime = {"runtime": self.runtime_label, "export": EXPORT_FORMAT}
                self._fingerprint = fingerprint_json({"weights": weights, **runtime})
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        """Forget the cached fingerprint after the weights changed (a training step). An exported
        runtime copy does not follow the new weights: training runs on torch."""
        self._fingerprint = None

    def describe(self) -> dict[str, Any]:
        """The encoder info, its fingerprint and the runtime (what an index records)."""
        return {
            **asdict(self.info),
            "fingerprint": self.fingerprint,
            "runtime": self.runtime,
            "quantize": self.quantize,
            "precision": self.precision,
        }

    @property
    def precision(self) -> str:
        """The activation precision the encoder computes in: ``f32`` (torch in fp32, or what the
        exported runtime reports for its compiled model; int8 quantises weights only)."""
        if self._compiled is not None:
            return self._compiled.precision
        import torch

        matmul = torch.get_float32_matmul_precision()  # "highest" unless a caller allowed bf16/tf32 GEMMs
        return "f32" if matmul == "highest" else f"f32 (matmul precision {matmul})"

    # ----------------------------------------------------------------- encoding
    def text(self, example: Example) -> str:
        """The templated text of ``example`` before any token budget (for display and BM25)."""
        return airrep_text(example.prompt, example.response, self.info.max_prompt_words)

    def input_ids(self, examples: Sequence[Example]) -> list[EncoderInput]:
        """Encoder token ids of each example under the answer-preserving budget (:data:`INPUT_RULE`).

        The one function that turns examples into encoder inputs, for indexing, queries and training
        (:func:`airsearch.encoder_inputs.template_input_ids`).
        """
        return template_input_ids(
            self._tokenize,
            [e.prompt for e in examples],
            [e.response for e in examples],
            self.template_tokens(),
            max_seq_length=self.info.max_seq_length,
            max_prompt_words=self.info.max_prompt_words,
        )

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.model.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def template_tokens(self) -> TemplateTokens:
        """The template markers and the special tokens the tokenizer puts around one sequence."""
        marks = self._tokenize([QUESTION_PREFIX, ANSWER_PREFIX])
        head, tail = self._special_tokens()
        return TemplateTokens(tuple(marks[0]), tuple(marks[1]), head, tail)

    def _special_tokens(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The special tokens the tokenizer puts before and after one sequence (``[CLS]``, ``[SEP]``)."""
        tok = self.model.tokenizer
        bare = tok("a", add_special_tokens=False)["input_ids"]
        full = tok("a", add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(bare) + 1):
            if full[i : i + len(bare)] == bare:
                return tuple(full[:i]), tuple(full[i + len(bare) :])
        raise InputError("cannot locate the tokenizer's special tokens in the encoder's tokenizer")

    def features(self, ids: Sequence[Sequence[int]], device: str | None = None) -> dict[str, torch.Tensor]:
        """Padded model inputs (``input_ids``, ``attention_mask``, ``token_type_ids``) on ``device``
        (default: the model's)."""
        pad = self.model.tokenizer.pad_token_id or 0
        width = max((len(x) for x in ids), default=0)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[row, : len(x)] = 1
        feats = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.model.tokenizer.model_input_names:
            feats["token_type_ids"] = torch.zeros_like(input_ids)
        target = device or self.model.device
        return {k: v.to(target) for k, v in feats.items()}

    def forward_ids(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Differentiable embeddings ``[n, dim]`` of token-id inputs (used by encoder training)."""
        return self.model(self.features(ids))

    def encode(
        self,
        examples: Sequence[Example],
        *,
        batch_size: int = 64,
        show_progress: bool | None = None,
        on_batch: Callable[[int], Any] | None = None,
    ) -> np.ndarray:
        """AirRep vectors of ``examples``: float32 ``[n, dim]``.

        Batches are formed from inputs sorted by length (less padding), then put back in order.
        ``on_batch(n)`` is called after each batch of ``n`` examples (a caller's progress bar).
        """
        if len(examples) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        show = (not quiet_default()) if show_progress is None else show_progress
        ids = self.input_ids(examples)
        bar = progress(desc="encoding", total=len(ids), unit="ex", quiet=not show or len(ids) <= batch_size)
        out = self.encode_ids(ids, batch_size=batch_size, on_batch=lambda n: _tick(bar, on_batch, n))
        bar.close()
        return out

    def encode_ids(
        self,
        ids: Sequence[Sequence[int]],
        *,
        batch_size: int = 64,
        on_batch: Callable[[int], Any] | None = None,
    ) -> np.ndarray:
        """Vectors ``[n, dim]`` (float32, in input order) of token-id inputs, on this encoder's runtime.

        Batches are formed from inputs sorted by length (less padding), then put back in order.
        """
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                rows = order[s : s + batch_size]
                batch = [ids[i] for i in rows]
                if self._compiled is not None:
                    out[rows] = self._compiled({k: v.numpy() for k, v in self.features(batch, "cpu").items()})
                else:
                    out[rows] = self.forward_ids(batch).float().cpu().numpy()
                if on_batch is not None:
                    on_batch(len(rows))
        self.model.train(was_training)
        return out

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Encode raw texts as ``SentenceTransformer(folder).encode`` does (stripped, no template, the
        tokenizer cuts from the right); float32 ``[n, dim]``. Examples go through :meth:`encode`."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok, out = self.model.tokenizer, []
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(texts), batch_size):
                batch = [str(t).strip() for t in texts[s : s + batch_size]]
                feats = tok(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.info.max_seq_length,
                    return_tensors="pt",
                )
                feats = {k: v.to(self.model.device) for k, v in feats.items() if k in tok.model_input_names}
                out.append(self.model(feats).float().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(out).astype(np.float32)

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
        """Encode an iterable of any length in chunks, yielding ``(examples, vectors)`` per chunk (the
        progress bar moves with every batch)."""
        bar = progress(desc=desc, total=total, unit="ex", quiet=quiet)
        chunk: list[Example] = []
        for ex in examples:
            chunk.append(ex)
            if len(chunk) >= chunk_size:
                yield (
                    chunk,
                    self.encode(chunk, batch_size=batch_size, show_progress=False, on_batch=bar.update),
                )
                chunk = []
        if chunk:
            yield chunk, self.encode(chunk, batch_size=batch_size, show_progress=False, on_batch=bar.update)
        bar.close()


def _tick(bar: Any, on_batch: Callable[[int], Any] | None, n: int) -> None:
    bar.update(n)
    if on_batch is not None:
        on_batch(n)


def _read_info(path: Path) -> EncoderInfo:
    """``airsearch_encoder.json``; an untrained encoder recorded under the old input rule moves to the
    current rule (its weights are the base encoder's), a trained one is refused."""
    try:
        data = json.loads(path.read_text())
        data.setdefault("input_rule", LEGACY_INPUT_RULE)  # written before the rule was recorded
        info = EncoderInfo(**data)
    except (json.JSONDecodeError, TypeError) as e:
        raise InputError(f"unreadable encoder info: {e}", path=path) from None
    if info.input_rule != INPUT_RULE:
        if info.trained:
            raise InputError(
                f"this encoder was trained with the old input rule '{info.input_rule}', which cut the "
                "answer off long rows; retrain it with this version (airsearch train)",
                path=path,
            )
        info.input_rule = INPUT_RULE
    return info
