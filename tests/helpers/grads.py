"""Plain references for the gradient tests: one autograd call per example (or per token)."""

from __future__ import annotations

import torch

from airsearch.lm import masked_token_nll


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
        masked_token_nll(out.logits, one["labels"], "mean")[0].backward()
        rows.append(torch.cat([params[k].grad.reshape(-1) for k in names]))
    return torch.stack(rows)


def loop_token_grads(model, names, enc, row):
    """Reference: the gradient of each response token's NLL of one example, one autograd call each."""
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
