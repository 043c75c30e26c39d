"""White-box Daunce in the evaluation harness: :class:`WhiteboxDaunce` trains Daunce's white-box Eq. 5
run on the training set before the method is built (every method, this one included, is scored through
the one adapter, :class:`airsearch.trainers.evaluation.methods.Method`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airsearch.data.example import Example
from airsearch.errors import InputError
from airsearch.lm.model import TargetLM
from airsearch.methods.daunce_run import DaunceConfig


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
