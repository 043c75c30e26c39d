"""The target language model: loading, saving and the prompt/response formatting of examples.

The loss of an example z = (prompt, response) is the mean NLL over the response tokens only
(methods.md, notation). This module turns examples into token ids plus ``labels`` in which every
prompt and padding position is ``-100``; :mod:`airsearch.lm.loss` scores them.

Formatting:

- a tokenizer with a chat template: the user turn is the prompt and the assistant turn the response;
  the prompt part is the template rendered with ``add_generation_prompt=True``, and everything the
  full conversation adds after it (the response and the template's end-of-turn tokens) is scored;
- otherwise the AirRep template ``"Question: {prompt}\\nAnswer: "`` + response + EOS, with BOS first
  when the tokenizer has one;
- a pre-training ``text`` row (empty prompt): BOS + the whole text + EOS, all of it scored.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from airsearch.atomic import atomic_path
from airsearch.data.example import ANSWER_PREFIX, QUESTION_PREFIX, Example
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_state_dict
from airsearch.progress import quiet_libraries
from airsearch.weights import refuse_remote_code, require_safetensors

LM_INFO_FILE = "airsearch_lm.json"
IGNORE_INDEX = -100


@dataclass
class TargetLM:
    """A causal LM and its tokenizer, with where it came from and a lazily computed weights fingerprint.

    ``model`` is a transformers causal LM, or a ``peft.PeftModel`` wrapping one after a LoRA
    fine-tune (see :func:`airsearch.lm.finetune.finetune`).
    """

    model: Any
    tokenizer: Any
    source: str
    max_length: int = 512
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the weights (names, shapes, dtypes, bytes); computed once, on first use."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_state_dict(self.model.state_dict())
        return self._fingerprint

    def invalidate_fingerprint(self) -> None:
        """Forget the cached fingerprint (call after changing the weights in place)."""
        self._fingerprint = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "peft_config")

    def clone(self) -> TargetLM:
        """A deep copy of the model (for a fresh fine-tune); the tokenizer is shared (read-only)."""
        return TargetLM(
            model=copy.deepcopy(self.model),
            tokenizer=self.tokenizer,
            source=self.source,
            max_length=self.max_length,
            _fingerprint=self._fingerprint,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in names:
        raise InputError(f"unknown dtype {dtype!r}; use one of {sorted(names)}", field="dtype")
    return names[dtype]


def _looks_like_path(name: str) -> bool:
    """A hub name is ``name`` or ``org/name``; anything else that does not exist is a missing folder."""
    return (
        name.startswith((".", "/", "~"))
        or name.endswith("/")
        or name.count("/") > 1
        or os.sep != "/"
        and os.sep in name
    )


def load_lm(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    max_length: int = 512,
) -> TargetLM:
    """Load a HF causal-LM folder (or, with a network, a hub name) and its tokenizer.

    Weights are read from safetensors only. ``device`` defaults to CUDA when available. ``dtype``
    defaults to float32 whatever the folder stores (transformers would otherwise load a bf16
    checkpoint in bf16, and every gradient would silently be a bf16 one); ask for bf16 explicitly.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(
                "a target LM must be a model folder (config.json, *.safetensors, tokenizer); "
                "convert a .gguf file with: airsearch lm import-gguf FILE --out DIR",
                path=name,
            )
        if not (path / "config.json").exists():
            raise InputError("not a HF model folder: config.json is missing", path=name)
        require_safetensors(path)
        refuse_remote_code(path, trust_remote_code=trust_remote_code)
        source = str(path.resolve())
    elif _looks_like_path(name):
        raise InputError("model folder not found", path=name)
    else:
        source = name
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=_resolve_dtype(dtype) or torch.float32, use_safetensors=True, **kwargs
        )
    except OSError as e:
        hint = (
            " (the hub is offline here: pass a local model folder)" if offline and not path.exists() else ""
        )
        raise InputError(f"cannot load the model: {e}{hint}", path=name) from None
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    return TargetLM(model=model, tokenizer=tokenizer, source=source, max_length=max_length)


def save_lm(lm: TargetLM, path: str | os.PathLike) -> Path:
    """Save ``lm`` as an ordinary HF folder: safetensors weights, tokenizer, and ``airsearch_lm.json``.

    A LoRA (peft) model is saved merged, as a plain model, so every command can load the folder.
    The folder appears atomically.
    """
    path = Path(path)
    model = lm.model
    if lm.is_peft:
        model = copy.deepcopy(model).merge_and_unload()
    with atomic_path(path, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        info = {
            "source": lm.source,
            "fingerprint": fingerprint_state_dict(model.state_dict()),
            "max_length": lm.max_length,
            "num_parameters": sum(p.numel() for p in model.parameters()),
        }
        (tmp / LM_INFO_FILE).write_text(json.dumps(info, indent=2))
    return path


# ----------------------------------------------------------------------------------------- formatting


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _tok(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def format_example(tokenizer: Any, example: Example) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) of one example; only the response ids are scored."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if not example.prompt:
        return bos, _tok(tokenizer, example.response) + eos
    if has_chat_template(tokenizer):
        user = [{"role": "user", "content": example.prompt}]
        both = user + [{"role": "assistant", "content": example.response}]
        prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(both, tokenize=False)
        if full_text.startswith(prompt_text):
            return _tok(tokenizer, prompt_text), _tok(tokenizer, full_text[len(prompt_text) :])
        # A template that rewrites earlier turns: fall back to the prompt + the raw response.
        return _tok(tokenizer, prompt_text), _tok(tokenizer, example.response) + eos
    prompt_text = QUESTION_PREFIX + example.prompt + ANSWER_PREFIX
    return bos + _tok(tokenizer, prompt_text), _tok(tokenizer, example.response) + eos


def _truncate(
    prompt: list[int], response: list[int], max_length: int, example_id: str
) -> tuple[list[int], list[int]]:
    """Cut the prompt from the left (keeping its first token, e.g. BOS), then the response from the right."""
    if len(prompt) + len(response) > max_length:
        room = max(max_length - len(response), 1 if prompt else 0)
        if len(prompt) > room:
            prompt = prompt[:1] + prompt[len(prompt) - room + 1 :] if room > 1 else prompt[:1]
        response = response[: max(max_length - len(prompt), 0)]
    scored = len(response) if prompt else len(response) - 1  # the first token is never predicted
    if scored < 1:
        raise InputError(
            f"no response token left to score ({len(prompt)} prompt + {len(response)} response "
            f"tokens kept, max_length {max_length}); raise max_length or give a non-empty response",
            row=example_id,
        )
    return prompt, response


def tokenize_example(tokenizer: Any, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one example, unpadded; prompt labels are ``-100``."""
    prompt, response = _truncate(*format_example(tokenizer, example), max_length, example.id)
    return prompt + response, [IGNORE_INDEX] * len(prompt) + response


def pad_id(tokenizer: Any) -> int:
    for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if t is not None:
            return int(t)
    return 0


def encode_examples(
    lm: TargetLM, examples: Sequence[Example], max_length: int | None = None
) -> dict[str, torch.Tensor]:
    """Padded (right) ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    max_length = max_length or lm.max_length
    rows = [tokenize_example(lm.tokenizer, ex, max_length) for ex in examples]
    if not rows:
        raise InputError("no examples to encode")
    width = max(len(ids) for ids, _ in rows)
    pid = pad_id(lm.tokenizer)
    input_ids = torch.full((len(rows), width), pid, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, : len(lab)] = torch.tensor(lab)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
