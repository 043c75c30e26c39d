"""Shared helpers for the gradient-method tests: a very small pre-trained Llama and a few examples."""

from __future__ import annotations

from pathlib import Path

import torch

from airsearch.data.example import Example

WORDS = [
    "red",
    "blue",
    "green",
    "cat",
    "dog",
    "bird",
    "one",
    "two",
    "three",
    "sun",
    "moon",
    "star",
    "tree",
    "river",
    "stone",
    "fire",
    "water",
    "apple",
    "bread",
    "milk",
    "north",
    "south",
    "east",
    "west",
    "fast",
    "slow",
    "big",
    "small",
]


def make_examples(n: int, prefix: str = "ex", seed: int = 0) -> list[Example]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        response = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
        out.append(Example(id=f"{prefix}{i}", prompt=prompt, response=response))
    return out


def build_micro_lm(out_dir: Path, steps: int = 30) -> Path:
    """A ~30k-parameter Llama with a 300-entry BPE, briefly pre-trained (seconds on one core)."""
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

    cfg = TinyLMConfig(
        vocab_size=300,
        hidden_size=16,
        layers=1,
        heads=2,
        intermediate_size=32,
        context=32,
        steps=steps,
        batch_size=4,
        warmup_steps=2,
        min_frequency=1,
    )
    return build_tiny_lm(make_examples(60, seed=123), out_dir, cfg, show_progress=False)


def loop_grads(model, names, enc):
    """Reference: one forward+backward per example, unpadded, with the attention mask."""
    rows = []
    params = dict(model.named_parameters())
    for i in range(enc["input_ids"].shape[0]):
        n = int(enc["attention_mask"][i].sum())
        one = {k: v[i : i + 1, :n] for k, v in enc.items()}
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(True)
        out = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"])
        from airsearch.lm import masked_token_nll

        masked_token_nll(out.logits, one["labels"], "mean")[0].backward()
        rows.append(torch.cat([params[k].grad.reshape(-1) for k in names]))
    return torch.stack(rows)


def loop_token_grads(model, names, enc, row):
    """Reference: the gradient of each response token's NLL of one example, one autograd call each."""
    from airsearch.lm import masked_token_nll

    n = int(enc["attention_mask"][row].sum())
    ids, labels = enc["input_ids"][row : row + 1, :n], enc["labels"][row : row + 1, :n]
    params = dict(model.named_parameters())
    for p in model.parameters():
        p.requires_grad_(True)
    nll = masked_token_nll(model(input_ids=ids).logits, labels, "none")[0]
    out = []
    for j in (labels[0, 1:] != -100).nonzero().squeeze(-1).tolist():
        g = torch.autograd.grad(nll[j], [params[k] for k in names], retain_graph=True)
        out.append(torch.cat([x.reshape(-1) for x in g]))
    return torch.stack(out)
