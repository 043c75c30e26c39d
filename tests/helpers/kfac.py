"""Slow references for the K-FAC / EK-FAC tests: explicit factors, dense curvature, dense inverses."""

from __future__ import annotations

import torch

from airsearch.lm import masked_token_nll


def loop_factors(model, blocks, enc):
    """K-FAC factors one unpadded example at a time (attention mask passed, hooks, plain backward).

    A = sum over tokens of a a^T / tokens, S = sum over tokens of d d^T / examples (kfac.py).
    """
    modules = dict(model.named_modules())
    cov_a = {b.module: torch.zeros(b.cols, b.cols, dtype=torch.float64) for b in blocks}
    cov_s = {b.module: torch.zeros(b.out_features, b.out_features, dtype=torch.float64) for b in blocks}
    tokens = 0
    n = enc["input_ids"].shape[0]
    for i in range(n):
        length = int(enc["attention_mask"][i].sum())
        ids, labels = enc["input_ids"][i : i + 1, :length], enc["labels"][i : i + 1, :length]
        seen = {}

        def record(module, args, output, name, seen=seen):
            output.retain_grad()
            seen[name] = (args[0], output)

        handles = [
            modules[b.module].register_forward_hook(lambda m, a, o, name=b.module: record(m, a, o, name))
            for b in blocks
        ]
        for p in model.parameters():
            p.requires_grad_(True)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        masked_token_nll(out.logits, labels, "mean")[0].backward()
        for h in handles:
            h.remove()
        tokens += length
        for b in blocks:
            a, o = seen[b.module]
            a = a[0].detach().double()
            if b.bias:
                a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=torch.float64)], dim=1)
            d = o.grad[0].double()
            cov_a[b.module] += a.T @ a
            cov_s[b.module] += d.T @ d
        model.zero_grad(set_to_none=True)
    return {k: v / tokens for k, v in cov_a.items()}, {k: v / n for k, v in cov_s.items()}


def block_matrix(block, offsets, grads):
    """The ``[n, out * cols]`` slice of flat gradients in ``[W | b]`` row-major order."""
    ws, we = offsets[block.weight]
    w = grads[:, ws:we].reshape(grads.shape[0], block.out_features, block.in_features)
    if block.bias:
        bs, be = offsets[block.bias]
        w = torch.cat([w, grads[:, bs:be, None]], dim=2)
    return w.reshape(grads.shape[0], -1)


def dense_inverse_scores(pre, train_grads, test_grads, curvature, damping=None, whiten_cos=False):
    """``g_test^T (H + lambda)^{-1} g_train`` with the dense damped inverse of each module's block.

    ``curvature(block) -> [out*cols, out*cols]`` gives the block's H; ``damping`` None uses 0.1 x
    its mean eigenvalue. With ``whiten_cos`` the score is the cosine in the ``(H + lambda)^{-1}`` metric.
    """
    tr, te = train_grads.double(), test_grads.double()
    total = torch.zeros(tr.shape[0], te.shape[0], dtype=torch.float64)
    norm_tr = torch.zeros(tr.shape[0], dtype=torch.float64)
    norm_te = torch.zeros(te.shape[0], dtype=torch.float64)
    for block in pre.factors.blocks:
        h = curvature(block)
        lam = 0.1 * torch.linalg.eigvalsh(h).mean() if damping is None else damping
        inv = torch.linalg.inv(h + lam * torch.eye(h.shape[0], dtype=torch.float64))
        a, b = block_matrix(block, pre.offsets, tr), block_matrix(block, pre.offsets, te)
        total += a @ inv @ b.T
        norm_tr += ((a @ inv) * a).sum(1)
        norm_te += ((b @ inv) * b).sum(1)
    if whiten_cos:
        total = total / norm_tr.sqrt()[:, None] / norm_te.sqrt()[None, :]
    return total


def relative_error(fast, ref):
    return float((fast.double() - ref).abs().max() / ref.abs().max())
