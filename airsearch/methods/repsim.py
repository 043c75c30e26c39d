"""RepSim: representation similarity of the target LM itself (DATE-LM's baseline; docs/methods.md §3b).

One forward pass per example and no backward: the example's vector is the mean of the LM's last-layer
hidden states over its tokens (prompt and response, as formatted for the LM, padding excluded) [D],
unit-normalised, so the score is the cosine ``cos(h(z_t), h(z_e))``. It asks "does the model represent
these two examples alike?" rather than "does training on z_t lower the loss on z_e?", and is cheap
enough for every role: eval, attribute, rerank and label teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from airsearch.data.example import Example
from airsearch.lm.model import encode_examples
from airsearch.methods.base import AttributionMethod
from airsearch.methods.options import RepSimOptions
from airsearch.methods.plugin import MethodModels, MethodPlugin
from airsearch.methods.store import VectorManifest
from airsearch.methods.tracin import lm_identity
from airsearch.progress import progress


class RepSim(AttributionMethod):
    """Cosine of mean-pooled last hidden states of ``lm`` (a :class:`~airsearch.lm.model.TargetLM`)."""

    name = "repsim"

    def __init__(
        self,
        lm: Any,
        *,
        normalize: bool = True,
        batch_size: int = 8,
        max_length: int | None = None,
        show_progress: bool = True,
    ) -> None:
        self.lm = lm
        self.normalize = normalize
        self.batch_size = batch_size
        self.max_length = max_length
        self.show_progress = show_progress

    def features(self, examples: Sequence[Example]) -> torch.Tensor:
        """``[n, hidden]`` mean-pooled last hidden states (unit-normalised unless ``normalize=False``)."""
        model = self.lm.model
        was_training = model.training
        model.eval()
        parts = []
        bar = progress(desc="repsim", total=len(examples), unit="ex", quiet=not self.show_progress or None)
        with torch.inference_mode():
            for s in range(0, len(examples), self.batch_size):
                batch = encode_examples(self.lm, examples[s : s + self.batch_size], self.max_length)
                mask = batch["attention_mask"].to(self.lm.device)
                out = model(
                    input_ids=batch["input_ids"].to(self.lm.device),
                    attention_mask=mask,
                    output_hidden_states=True,
                )
                h = out.hidden_states[-1].float()
                m = mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
                parts.append(pooled.cpu())
                bar.update(pooled.shape[0])
        bar.close()
        model.train(was_training)
        feats = torch.cat(parts) if parts else torch.zeros(0, 0)
        return torch.nn.functional.normalize(feats, dim=1) if self.normalize else feats

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.features(examples)

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.features(examples)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "normalize": self.normalize, "max_length": self.max_length}

    def manifest(self) -> VectorManifest:
        hidden = int(self.lm.model.config.hidden_size)
        return VectorManifest(
            feature="repsim-unit" if self.normalize else "repsim",
            model_fingerprint=self.lm.fingerprint,
            checkpoints=[lm_identity(self.lm)],
            param_set={},
            projection={},
            dim=hidden,
            extra=self.describe(),
        )


def build_repsim(options: RepSimOptions, models: MethodModels) -> RepSim:
    """RepSim on the target LM (one forward pass, no gradient)."""
    return RepSim(
        models.target(options),
        batch_size=options.batch_size,
        max_length=options.max_length,
        show_progress=models.show_progress,
    )


PLUGINS = (
    MethodPlugin(
        name="repsim",
        options=RepSimOptions,
        build=build_repsim,
        summary="RepSim: cosine of the LM's mean last hidden states",
    ),
)
