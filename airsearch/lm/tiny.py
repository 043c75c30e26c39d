"""A tiny target LM for CPU tests and CPU-scale benchmarks, built from the corpus itself.

No causal LM small enough for CPU work ships on PyPI (offline-assets.md), so this builds one:

1. a byte-level BPE tokenizer of ``vocab_size`` entries trained with ``tokenizers`` on the corpus,
   with ``<pad>``, ``<s>`` (BOS), ``</s>`` (EOS) and ``<unk>``;
2. a small ``LlamaConfig`` (hidden 128, 2 layers, 4 heads, MLP 256, tied embeddings by default);
3. a few minutes of seeded causal-LM pre-training on the corpus texts, each formatted with the
   AirRep "Question:/Answer:" template (text rows as they are), packed into one token stream from
   which windows of ``context`` tokens are drawn;
4. optionally (``eval_every``) a held-out loss curve: a seeded share of the rows is set aside (the
   tokenizer and the model never see it), its mean token NLL is measured every ``eval_every`` steps on
   fixed windows, and with ``patience`` pre-training stops once the curve has flattened (no relative
   improvement of ``min_delta`` over ``patience`` measurements).

The output is an ordinary HF folder (``model.safetensors``, ``config.json``, ``tokenizer.json``...)
that :func:`airsearch.lm.load_lm`, ``AutoModelForCausalLM`` and ``AutoTokenizer`` load, plus
``airsearch_lm.json`` (source, fingerprints, the build config and the training-loss curve).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airsearch.atomic import atomic_path
from airsearch.config import CommandConfig, require
from airsearch.data.example import ANSWER_PREFIX, QUESTION_PREFIX, Example
from airsearch.errors import InputError
from airsearch.fingerprint import fingerprint_state_dict
from airsearch.progress import progress, quiet_default

if TYPE_CHECKING:  # torch loads when a model is built, not when the config is read
    import torch

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
TINY_CONFIG_FILE = "tiny_lm_config.json"


@dataclass(kw_only=True)
class TinyLMConfig(CommandConfig):
    """Size and pre-training budget of the tiny Llama (defaults: ~0.9M parameters, a few CPU minutes)."""

    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size (special tokens included)."})
    hidden_size: int = field(default=128, metadata={"help": "Model width."})
    layers: int = field(default=2, metadata={"help": "Transformer layers."})
    heads: int = field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width."})
    context: int = field(default=128, metadata={"help": "Tokens per pre-training window."})
    steps: int = field(default=1000, metadata={"help": "Pre-training steps (0 = random weights)."})
    batch_size: int = field(default=8, metadata={"help": "Windows per pre-training step."})
    lr: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (cosine decay)."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    min_frequency: int = field(default=2, metadata={"help": "Minimum pair count for a BPE merge."})
    tie_embeddings: bool = field(default=True, metadata={"help": "Share input and output embeddings."})
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and window sampling."})
    eval_every: int = field(
        default=0, metadata={"help": "Measure the held-out loss every N steps (0 = no held-out rows)."}
    )
    held_out: float = field(
        default=0.05, metadata={"help": "With --eval-every: share of the rows set aside for that loss."}
    )
    patience: int = field(
        default=0,
        metadata={
            "help": "With --eval-every: stop once this many measurements in a row improve the held-out "
            "loss by less than --min-delta (relative); 0 = run every step."
        },
    )
    min_delta: float = field(
        default=0.01, metadata={"help": "Relative improvement that counts (flattening)."}
    )

    def validate(self) -> None:
        require(self.vocab_size >= 300, "vocab_size", "must be at least 300 (256 bytes + specials + merges)")
        require(self.hidden_size >= 8, "hidden_size", "must be at least 8")
        require(self.layers >= 1, "layers", "must be at least 1")
        require(self.heads >= 1 and self.hidden_size % self.heads == 0, "heads", "must divide hidden_size")
        require(self.intermediate_size >= 1, "intermediate_size", "must be positive")
        require(self.context >= 8, "context", "must be at least 8")
        require(self.steps >= 0, "steps", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be at least 1")
        require(self.lr > 0, "lr", "must be positive")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.min_frequency >= 1, "min_frequency", "must be at least 1")
        require(self.eval_every >= 0, "eval_every", "must be >= 0")
        require(0.0 < self.held_out < 1.0, "held_out", "must be in (0, 1)")
        require(self.patience >= 0, "patience", "must be >= 0")
        require(self.min_delta >= 0, "min_delta", "must be >= 0")


def corpus_text(example: Example) -> str:
    """The pre-training text of one example: the AirRep template, or the bare text of a text row."""
    return (
        QUESTION_PREFIX + example.prompt + ANSWER_PREFIX + example.response
        if example.prompt
        else example.response
    )


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, *, min_frequency: int = 2, model_max_length: int = 512
) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on ``texts`` (BOS added by the post-processor)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
    )


def _token_stream(tokenizer: Any, texts: Sequence[str], min_len: int) -> torch.Tensor:
    import torch

    ids: list[int] = []
    for chunk in range(0, len(texts), 256):
        enc = tokenizer(list(texts[chunk : chunk + 256]), add_special_tokens=False)["input_ids"]
        for row in enc:
            ids.append(tokenizer.bos_token_id)
            ids.extend(row)
            ids.append(tokenizer.eos_token_id)
    stream = torch.tensor(ids, dtype=torch.long)
    if len(stream) < min_len:  # a very small corpus: repeat it
        stream = stream.repeat(math.ceil(min_len / max(len(stream), 1)))
    return stream


def build_tiny_lm(
    examples: Sequence[Example],
    out_dir: str | Path,
    cfg: TinyLMConfig | None = None,
    *,
    show_progress: bool = True,
) -> Path:
    """Train the tokenizer, build and pre-train a tiny Llama on ``examples``; save a HF folder at ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from airsearch.lm.model import LM_INFO_FILE

    if not show_progress or quiet_default():
        hf_logging.disable_progress_bar()
    cfg = cfg or TinyLMConfig()
    if not examples:
        raise InputError("the corpus to build a tiny LM from is empty")
    started = time.perf_counter()
    examples, held = held_out_split(examples, cfg)
    texts = [corpus_text(ex) for ex in examples]
    tokenizer = train_tokenizer(texts, cfg.vocab_size, min_frequency=cfg.min_frequency, model_max_length=512)
    stream = _token_stream(tokenizer, texts, cfg.context + 1)
    windows = _held_out_windows(_token_stream(tokenizer, [corpus_text(e) for e in held], 0), cfg.context)
    tokenizer_s = time.perf_counter() - started

    model_cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=2048,
        tie_word_embeddings=cfg.tie_embeddings,
        attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = LlamaForCausalLM(model_cfg)
    losses, curve = _pretrain(model, stream, cfg, show_progress, windows)
    model.eval()
    train_s = time.perf_counter() - started - tokenizer_s

    out_dir = Path(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    from airsearch.data.corpus import fingerprint_examples

    corpus_fp = fingerprint_examples(examples)
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        cfg.save(tmp / TINY_CONFIG_FILE)
        info = {
            "source": f"airsearch-tiny:{corpus_fp}",
            "fingerprint": fingerprint_state_dict(model.state_dict()),
            "corpus_fingerprint": corpus_fp,
            "corpus_examples": len(examples),
            "stream_tokens": len(stream),
            "num_parameters": n_params,
            "vocab_size": len(tokenizer),
            "config": cfg.to_dict(),
            "tokenizer_seconds": round(tokenizer_s, 3),
            "train_seconds": round(train_s, 3),
            "seconds_per_step": round(train_s / len(losses), 4) if losses else None,
            "loss_first": losses[0] if losses else None,
            "loss_last": _tail_mean(losses),
            "loss_curve": losses[:: max(1, len(losses) // 100)],
            "steps_run": len(losses),
            "held_out_rows": len(held),
            "held_out_curve": curve,  # [[step, mean token NLL on the held-out windows], ...]
            "flattened": _flattened(curve, cfg) if cfg.patience else None,
        }
        (tmp / LM_INFO_FILE).write_text(json.dumps(info, indent=2))
    return out_dir


def held_out_split(examples: Sequence[Example], cfg: TinyLMConfig) -> tuple[list[Example], list[Example]]:
    """(pre-training rows, held-out rows): with ``eval_every``, ``held_out`` of the rows (a seeded
    permutation of the sorted ids, so it depends on the content, not the order); else all rows and none."""
    import torch

    rows = list(examples)
    if not cfg.eval_every or len(rows) < 2:
        return rows, []
    n = max(1, round(cfg.held_out * len(rows)))
    ids = sorted(e.id for e in rows)
    chosen = {ids[i] for i in torch.randperm(len(ids), generator=torch.Generator().manual_seed(cfg.seed))[:n]}
    return [e for e in rows if e.id not in chosen], [e for e in rows if e.id in chosen]


def _held_out_windows(stream: torch.Tensor, width: int, limit: int = 64) -> torch.Tensor:
    """Up to ``limit`` consecutive non-overlapping windows of the held-out stream (fixed, so the curve
    compares like with like)."""
    n = min(limit, len(stream) // width)
    return stream[: n * width].reshape(n, width)


def _held_out_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int) -> float:
    import torch

    from airsearch.lm.loss import masked_token_nll

    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(windows), batch_size):
            batch = windows[s : s + batch_size]
            logits = model(input_ids=batch, use_cache=False).logits
            total += float(masked_token_nll(logits, batch, "mean").sum())
    model.train(was_training)
    return round(total / len(windows), 5)


def _flattened(curve: list[list[float]], cfg: TinyLMConfig) -> bool:
    """True when the last ``patience`` measurements each improved the best before them by less than
    ``min_delta`` (relative): the held-out loss has stopped falling."""
    if len(curve) <= cfg.patience:
        return False
    best = min(loss for _, loss in curve[: -cfg.patience])
    return all(loss > best * (1 - cfg.min_delta) for _, loss in curve[-cfg.patience :])


def _tail_mean(losses: list[float], k: int = 20) -> float | None:
    return round(sum(losses[-k:]) / len(losses[-k:]), 5) if losses else None


def _pretrain(
    model: torch.nn.Module,
    stream: torch.Tensor,
    cfg: TinyLMConfig,
    show_progress: bool,
    held_out: torch.Tensor | None = None,
) -> tuple[list[float], list[list[float]]]:
    """Causal-LM training on random windows of the token stream: the per-step losses and, on
    ``held_out`` windows every ``eval_every`` steps, the held-out curve (stopping once it flattened)."""
    import torch

    from airsearch.lm.loss import masked_token_nll

    evaluate = bool(cfg.eval_every) and held_out is not None and len(held_out) > 0
    curve = [[0, _held_out_loss(model, held_out, cfg.batch_size)]] if evaluate else []
    if cfg.steps == 0:
        return [], curve
    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def schedule(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    width = cfg.context
    model.train()
    losses: list[float] = []
    bar = progress(
        range(cfg.steps), desc="pre-train tiny LM", unit="step", quiet=None if show_progress else True
    )
    for _ in bar:
        starts = torch.randint(0, len(stream) - width + 1, (cfg.batch_size,), generator=gen)
        batch = torch.stack([stream[s : s + width] for s in starts.tolist()])
        logits = model(input_ids=batch, use_cache=False).logits
        loss = masked_token_nll(logits, batch, "mean").mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
        if len(losses) % 10 == 0:
            bar.set_postfix(loss=f"{_tail_mean(losses, 10):.3f}")
        if evaluate and len(losses) % cfg.eval_every == 0:
            curve.append([len(losses), _held_out_loss(model, held_out, cfg.batch_size)])
            if cfg.patience and _flattened(curve, cfg):
                break
    bar.close()
    return losses, curve
