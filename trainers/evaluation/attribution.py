"""The adapter of the attribution methods (gradient methods, RepSim, Daunce) in the evaluation harness.

:class:`FeatureMethod` builds a method through the one registry
(:func:`airsearch.methods.registry.load_method`), computes its train vectors once in ``prepare`` (what a
vector store keeps; identical ones are shared between rows, e.g. DDA's beta / debias variants) and
serves score blocks ``u_i . v_j`` like every :class:`~airsearch.trainers.evaluation.methods.Method`,
through the plug-in contract (``row_vectors`` / ``query_vectors``; a ``"pairwise"`` method's own
``score_against`` per block of rows).
:class:`WhiteboxDaunce` trains Daunce's white-box Eq. 5 run on the training set first.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from airsearch.trainers.evaluation.methods import Method

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.methods.base import AttributionMethod
from airsearch.methods.daunce_run import DaunceConfig
from airsearch.methods.registry import MethodConfig


@dataclass
class WhiteboxDaunce:
    """White-box Daunce to train before scoring: K perturbed LoRA models on the Eq. 5 objective
    (:func:`airsearch.trainers.daunce.run_daunce`) into ``out`` (else a temporary folder)."""

    config: DaunceConfig
    out: Path | None = None

    def run(self, lm: TargetLM | None, train: Sequence[Example]) -> Path:
        from airsearch.trainers.daunce import run_daunce

        if lm is None:
            raise InputError("white-box Daunce needs the target LM folder", field="lm")
        if self.out is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="airsearch-daunce-wb-")
            self.out = Path(self._tmp.name)
        run_daunce(lm.source, list(train), [], self.config, self.out, quiet=True)
        return self.out


class FeatureMethod(Method):
    """Adapter for an :class:`airsearch.methods.base.AttributionMethod` (gradient methods, Daunce):
    train features are computed once in ``prepare`` (what a vector store keeps), test features per
    call, and scores ``u_i . v_j`` are served block by block. Additive: ``sum`` aggregation.

    Given a :class:`MethodConfig`, ``prepare`` builds the method through the one registry,
    :func:`airsearch.methods.registry.load_method`, on the models given here (black-box Daunce fits its K
    models on the training set then; with ``whitebox``, the white-box Eq. 5 run is trained on the
    training set first and read back); an already-built method is used as it is.
    """

    aggregation = "sum"

    def __init__(
        self,
        method: MethodConfig | AttributionMethod,
        *,
        lm: TargetLM | None = None,
        checkpoints: Sequence[TargetLM] = (),
        base_lm: TargetLM | None = None,
        name: str | None = None,
        whitebox: WhiteboxDaunce | None = None,
        shared: dict[str, tuple[torch.Tensor, float]] | None = None,
    ) -> None:
        super().__init__()
        self.whitebox, self.shared, self.reused_seconds = whitebox, shared, 0.0
        self.config = method if isinstance(method, MethodConfig) else None
        self.impl: AttributionMethod | None = None if isinstance(method, MethodConfig) else method
        self.name = name or (method.method if isinstance(method, MethodConfig) else method.name)
        self.lm, self.checkpoints, self.base_lm = lm, tuple(checkpoints), base_lm
        self.train_features: torch.Tensor | None = None
        self.train_rows: list[Example] = []

    def _prepare(self, train: list[Example]) -> None:
        if self.config is not None and self.whitebox is not None:
            self.config = self.config.replace(daunce_run=str(self.whitebox.run(self.lm, train)))
        if self.config is not None:
            from airsearch.methods.registry import load_method

            self.impl = load_method(
                self.config,
                lm=self.lm,
                checkpoints=self.checkpoints,
                base_lm=self.base_lm,
                train=train,
                show_progress=False,
            )
        assert self.impl is not None
        key = self._shared_key(train)
        if key is not None and key in self.shared:  # type: ignore[operator]
            self.train_features, self.reused_seconds = self.shared[key]  # type: ignore[index]
        elif getattr(self.impl, "score_kind", "dot") != "dot":  # the documented fallback: pairwise
            self.train_rows, self.train_features = list(train), None
            self.storage_bytes = 0
            return
        else:
            t0 = time.perf_counter()
            blocks = [b.detach().float().cpu() for b in self.impl.row_vectors(train)]  # the plug-in contract
            self.train_features = torch.cat(blocks) if blocks else self.impl.train_features(train).float()
            if key is not None:
                self.shared[key] = (self.train_features, time.perf_counter() - t0)  # type: ignore[index]
        self.storage_bytes = int(self.train_features.numel() * 4)

    def prepare(self, train: Sequence[Example]) -> None:
        """As :meth:`Method.prepare`; train vectors reused from an identical method (the same manifest:
        DDA's beta / debias variants share them) count the seconds they took to compute."""
        super().prepare(train)
        self.prepare_seconds += self.reused_seconds

    def _shared_key(self, train: Sequence[Example]) -> str | None:
        """What determines the train vectors: the method's vector-store manifest and the rows."""
        if self.shared is None:
            return None
        try:
            manifest = self.impl.manifest()  # type: ignore[union-attr]
        except InputError:  # a method that keeps no reusable train vectors (Daunce)
            return None
        fields = {f: getattr(manifest, f) for f in manifest.MATCH_FIELDS}
        return json.dumps([fields, [e.id for e in train]], sort_keys=True, default=str)

    def score_blocks(
        self, test: Sequence[Example], block_size: int = 4096
    ) -> Iterator[tuple[int, np.ndarray]]:
        assert self.impl is not None, "prepare() first"
        v = self.impl.query_vectors(list(test)).detach().float().cpu()
        if self.train_features is None:  # a pairwise method: its own scores of each block of rows
            for start in range(0, len(self.train_rows), block_size):
                block = self.impl.score_against(self.train_rows[start : start + block_size], v)
                yield start, block.detach().float().cpu().numpy()
            return
        for start in range(0, self.train_features.shape[0], block_size):
            yield start, (self.train_features[start : start + block_size] @ v.T).numpy()

    def fingerprint(self) -> str | None:
        fp = getattr(self.impl, "fingerprint", None)  # Daunce records the run / LM it scores with
        return fp if isinstance(fp, str) and fp else None

    def describe(self) -> dict[str, Any]:
        settings = self.impl.describe() if self.impl is not None else {"method": self.name}
        return {**super().describe(), "settings": settings}
