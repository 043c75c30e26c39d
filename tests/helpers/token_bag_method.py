"""A method added in one file (tests/test_method_plugin.py registers it): ``token-bag``.

Its row and query vectors are the unit-normalised counts of an example's response tokens (and,
weighted by ``prompt_weight``, its prompt tokens), hashed into ``dim`` buckets by token id; its score
is their dot product (the cosine of the two bags). It is small and real: the LM's own tokenizer, a
fingerprint from the LM's weights and the options, deterministic blocks. It shows the whole plug-in
contract of :mod:`airsearch.methods.plugin`: a name, an options dataclass, ``build``,
``train_features`` / ``test_features`` (so ``row_vectors`` / ``query_vectors``), a manifest (the
fingerprint) and ``score_kind`` ``"dot"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from airsearch.config import require
from airsearch.data.example import Example
from airsearch.methods.base import AttributionMethod
from airsearch.methods.options import LMOptions
from airsearch.methods.plugin import MethodModels, MethodPlugin
from airsearch.methods.store import VectorManifest


@dataclass(kw_only=True)
class TokenBagOptions(LMOptions):
    """``dim`` hash buckets; ``prompt_weight`` is how much a prompt token counts against a response token."""

    dim: int = field(default=32, metadata={"help": "hash buckets"})
    prompt_weight: float = field(default=0.0, metadata={"help": "weight of prompt tokens"})

    def validate(self) -> None:
        super().validate()
        require(self.dim >= 1, "dim", "must be at least 1")


def token_bag(tokenizer: Any, example: Example, dim: int, prompt_weight: float) -> list[float]:
    """The unnormalised bag of one example (also the tests' plain reference)."""
    bag = [0.0] * dim
    for text, weight in ((example.response, 1.0), (example.prompt, prompt_weight)):
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            bag[token % dim] += weight
    return bag


class TokenBag(AttributionMethod):
    name = "token-bag"

    def __init__(self, lm: Any, options: TokenBagOptions) -> None:
        self.lm, self.options = lm, options

    def _vectors(self, examples: Sequence[Example]) -> torch.Tensor:
        o = self.options
        rows = torch.tensor(
            [token_bag(self.lm.tokenizer, e, o.dim, o.prompt_weight) for e in examples], dtype=torch.float32
        ).reshape(len(examples), o.dim)
        return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self._vectors(examples)

    def test_features(self, examples: Sequence[Example]) -> torch.Tensor:
        return self._vectors(examples)

    def manifest(self) -> VectorManifest:
        return VectorManifest(
            feature="token-bag",
            model_fingerprint=self.lm.fingerprint,
            checkpoints=[],
            param_set={},
            projection={},
            dim=self.options.dim,
            extra={"method": self.name, "prompt_weight": self.options.prompt_weight},
        )


class PairwiseTokenBag(TokenBag):
    """The same score declared ``"pairwise"`` (the fallback for a method that is not a dot product of
    stored vectors): it scores rows against queries itself and gets no index column."""

    name = "token-bag-pairwise"
    score_kind = "pairwise"

    def train_features(self, examples: Sequence[Example]) -> torch.Tensor:
        raise AssertionError("a pairwise method is never asked for row vectors")

    def score_against(self, train: Sequence[Example], queries: torch.Tensor) -> torch.Tensor:
        return self._vectors(train) @ queries.T


def build(options: TokenBagOptions, models: MethodModels) -> TokenBag:
    cls = PairwiseTokenBag if models.method == "token-bag-pairwise" else TokenBag
    return cls(models.target(options), options)


PLUGINS = (
    MethodPlugin(
        name="token-bag",
        options=TokenBagOptions,
        build=build,
        summary="token-bag cosine (a test plug-in)",
        spec_options=("dim", "prompt_weight"),
    ),
    MethodPlugin(
        name="token-bag-pairwise",
        options=TokenBagOptions,
        build=build,
        summary="token-bag cosine, scored pairwise (a test plug-in)",
        score_kind="pairwise",
        spec_options=("dim", "prompt_weight"),
    ),
)
