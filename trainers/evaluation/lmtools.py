"""Target-LM helpers the evaluations need: greedy generation and unigram F1 (AirRep §6)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from airsearch.data.example import Example

_TOKEN = re.compile(r"\w+", re.UNICODE)


def unigram_f1(prediction: str, reference: str) -> float:
    """SQuAD-style unigram F1 between two strings (lower-cased word tokens, multiset overlap)."""
    p, r = _TOKEN.findall(prediction.lower()), _TOKEN.findall(reference.lower())
    if not p and not r:
        return 1.0
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def greedy_generate(lm: Any, examples: Sequence[Example], *, max_new_tokens: int = 32) -> list[str]:
    """Greedy continuation of each example's prompt, formatted exactly as the LM is trained on it
    (:func:`airsearch.lm.model.format_example`); stops at EOS. One example at a time (no padding)."""
    from airsearch.lm.model import format_example

    model, tok = lm.model, lm.tokenizer
    was_training = model.training
    model.eval()
    eos = tok.eos_token_id
    outs = []
    try:
        for ex in examples:
            prompt_ids, _ = format_example(tok, Example(ex.id, ex.prompt, "", ex.metadata))
            if not ex.prompt:
                prompt_ids = prompt_ids[:1]
            ids = torch.tensor([prompt_ids[-(lm.max_length - max_new_tokens) :]], device=lm.device)
            new: list[int] = []
            past = None
            step_ids = ids
            for _ in range(max_new_tokens):
                res = model(input_ids=step_ids, past_key_values=past, use_cache=True)
                past = res.past_key_values
                nxt = int(res.logits[0, -1].argmax())
                if eos is not None and nxt == eos:
                    break
                new.append(nxt)
                step_ids = torch.tensor([[nxt]], device=lm.device)
            outs.append(tok.decode(new, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return outs
