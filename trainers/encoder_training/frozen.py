"""A frozen lower encoder, computed once per row (``airsearch train --freeze-layers N``).

AirRep's step (methods.md §1, Eq. 9 through the two-pass trick of :mod:`.two_pass`) encodes every
sampled member and dev example twice, once without and once with grad. When the embeddings and the
lowest ``N`` transformer layers are frozen, their output for a row never changes during training, so
it is computed once, kept, and each later forward runs only the upper layers, the mean pooling and
the projection. The finished encoder is the ordinary full model (the frozen weights are the base
encoder's, untouched), so query-time vectors are computed exactly as for a fully trained encoder.

BERT-family encoders only (``bert.encoder.layer`` and ``bert.embeddings`` of :class:`AirRepNet`); anything else
is refused with a clear message.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from airsearch.encoder import AirRepEncoder, EncoderInput
from airsearch.errors import InputError

CACHE_ROWS = 20_000  # rows whose frozen output is kept (oldest dropped first); ~4 GB at 128 tokens x 384


class FrozenPrefix:
    """``forward_ids`` of ``encoder`` with its embeddings and lowest ``layers`` layers frozen and cached."""

    def __init__(self, encoder: AirRepEncoder, layers: int, *, cache_rows: int = CACHE_ROWS) -> None:
        bert = getattr(encoder.model, "bert", None)
        blocks = getattr(getattr(bert, "encoder", None), "layer", None)
        if bert is None or blocks is None or not hasattr(bert, "embeddings"):
            raise InputError("freeze_layers needs a BERT-family base encoder (embeddings + encoder.layer)")
        if layers >= len(blocks):
            raise InputError(
                f"the encoder has {len(blocks)} layers; freeze fewer than that (at most {len(blocks) - 1})",
                field="freeze_layers",
            )
        self.encoder, self.bert, self.blocks, self.layers = encoder, bert, blocks, layers
        for module in (bert.embeddings, *blocks[:layers]):
            for p in module.parameters():
                p.requires_grad_(False)
        self.cache: OrderedDict[EncoderInput, torch.Tensor] = OrderedDict()
        self.cache_rows = cache_rows

    def _run(
        self, blocks: Sequence[torch.nn.Module], hidden: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for block in blocks:
            out = block(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def lower(self, ids: Sequence[EncoderInput], batch_size: int = 64) -> list[torch.Tensor]:
        """The frozen part's output ``[len, hidden]`` of each input, computed once per distinct input."""
        todo = [x for x in dict.fromkeys(ids) if x not in self.cache]
        with torch.no_grad():
            for s in range(0, len(todo), batch_size):
                chunk = todo[s : s + batch_size]
                feats = self.encoder.features(chunk)
                hidden = self.bert.embeddings(
                    input_ids=feats["input_ids"], token_type_ids=feats.get("token_type_ids")
                )
                hidden = self._run(self.blocks[: self.layers], hidden, feats["attention_mask"])
                for row, x in enumerate(chunk):
                    self.cache[x] = hidden[row, : len(x)].clone()
        out = [self.cache[x] for x in ids]
        while len(self.cache) > self.cache_rows:  # after the lookup: this batch's rows are all in `out`
            self.cache.popitem(last=False)
        return out

    def forward_ids(self, ids: Sequence[EncoderInput]) -> torch.Tensor:
        """Embeddings ``[n, dim]`` of ``ids``, differentiable in the upper layers and the projection;
        equal to :meth:`AirRepEncoder.forward_ids` (the same function, computed from the cache)."""
        parts = self.lower(ids)
        width = max((len(p) for p in parts), default=0)
        dim = self.bert.config.hidden_size
        device = self.encoder.model.device
        hidden = torch.zeros(len(parts), width, dim, device=device)
        mask = torch.zeros(len(parts), width, dtype=torch.long, device=device)
        for row, p in enumerate(parts):
            hidden[row, : len(p)] = p
            mask[row, : len(p)] = 1
        states = self._run(self.blocks[self.layers :], hidden, mask)
        return self.encoder.model.pool_and_project(states, mask)
