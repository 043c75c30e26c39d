"""The label store: a directory of subset-loss labels (AirRep Eq. 8), written job by job.

Layout::

    DIR/
      manifest.json      format, full config, teacher, corpus/model fingerprints, code version,
                         and the sampled splits: [{split, dev_ids, pool_ids, n_subsets}]
      examples.parquet   id, prompt, response, metadata (JSON) of every dev and pool example
      results/           one file per finished job, s<split>-k<subset>.npz (see airsearch.trainers.runner):
                         split, subset, member_ids, dev_ids, losses[n_dev] (float64)

Subset retraining writes ``losses`` = the dev losses after fine-tuning on the subset. A gradient
teacher writes the *same* format with ``losses = -group score`` of the subset for each dev example,
so that Eq. 8's per-dev-example normalisation (:meth:`SplitLabels.targets`) applies unchanged::

    store = LabelStore.create(out_dir, manifest, examples)     # manifest from make_manifest(...)
    store.write_job_result(split, subset, member_ids, losses=-scores)

Readers: ``LabelStore.open(dir).splits()`` gives :class:`airsearch.labels.SplitLabels` of the
finished jobs, in split order, subsets in subset order.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from airsearch.trainers.labels.config import EXECUTION_FIELDS, LabelConfig
from airsearch.trainers.labels.results import LabelProgress, LabelStats, SplitProgress, SplitStats
from airsearch.trainers.labels.sampling import SplitPlan, job_id, parse_job_id
from airsearch.trainers.runner import clean_stale_temp_files, finished_job_ids, read_result, write_result

import airsearch
from airsearch.atomic import atomic_path, write_json_atomic
from airsearch.config import field_defaults, renamed_fields
from airsearch.data.example import Example
from airsearch.errors import FingerprintMismatch, InputError
from airsearch.fingerprint import check_match
from airsearch.labels import SplitLabels

FORMAT = "airsearch-labels"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EXAMPLES = "examples.parquet"
RESULTS = "results"


def code_version() -> dict[str, str | None]:
    """``airsearch.__version__`` and the git commit of the source tree, when it is a git checkout."""
    commit = None
    try:
        root = Path(__file__).resolve().parents[2]
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {"airsearch": airsearch.__version__, "git_commit": commit}


def make_manifest(
    config: dict[str, Any],
    plans: Sequence[SplitPlan],
    *,
    teacher: str,
    corpus_fingerprint: str,
    model_fingerprint: str,
) -> dict[str, Any]:
    """The manifest of a new store (teachers call this with their own config dict)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "teacher": teacher,
        "config": config,
        "corpus_fingerprint": corpus_fingerprint,
        "model_fingerprint": model_fingerprint,
        "code_version": code_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "splits": [
            {"split": p.split, "dev_ids": p.dev_ids, "pool_ids": p.pool_ids, "n_subsets": len(p.subsets)}
            for p in plans
        ],
    }


class LabelStore:
    """Read and write one label store directory (layout in the module docstring)."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self._splits = {int(s["split"]): s for s in manifest["splits"]}

    # ------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, root: str | os.PathLike) -> LabelStore:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise InputError("not a label store: manifest.json is missing", path=root)
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"cannot parse the manifest: {e}", path=path) from None
        if manifest.get("format") != FORMAT:
            raise InputError(f"not a label store manifest (format {manifest.get('format')!r})", path=path)
        if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
            raise InputError(
                f"label store format {manifest['format_version']} is newer than this "
                f"airsearch reads ({FORMAT_VERSION}); upgrade airsearch",
                path=path,
            )
        return cls(root, manifest)

    @classmethod
    def create(
        cls, root: str | os.PathLike, manifest: dict[str, Any], examples: Iterable[Example]
    ) -> LabelStore:
        """Create a store, or reopen an existing one made by the same config, teacher, corpus and model.

        A store made differently is refused with :class:`FingerprintMismatch` naming what differs.
        ``examples`` must include every dev and pool example of the manifest's splits.
        """
        root = Path(root)
        if (root / MANIFEST).exists():
            store = cls.open(root)
            store._check_same(manifest)
            if not (root / EXAMPLES).exists():
                store._write_examples(examples)
            (root / RESULTS).mkdir(exist_ok=True)
            return store
        ours = {EXAMPLES, RESULTS}  # left by a run killed before its manifest was written
        if root.exists() and any(
            p for p in root.iterdir() if not p.name.startswith(".") and p.name not in ours
        ):
            raise InputError(
                "the output folder exists, is not empty and is not a label store; choose another output folder",
                path=root,
            )
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root, manifest)
        store._write_examples(examples)
        (root / RESULTS).mkdir(exist_ok=True)
        write_json_atomic(root / MANIFEST, manifest)  # last: its presence marks a usable store
        return store

    def _check_same(self, new: dict[str, Any]) -> None:
        manifest_path = self.root / MANIFEST
        old = self.manifest
        for what, made_from in (
            ("corpus", "from a different corpus"),
            ("model", "with a different target model"),
        ):
            check_match(
                what,
                old.get(f"{what}_fingerprint"),
                new.get(f"{what}_fingerprint"),
                path=manifest_path,
                hint=f"This store was generated {made_from}; use another output folder.",
            )
        if old.get("teacher") != new.get("teacher"):
            raise FingerprintMismatch(
                f"teacher mismatch: the store was made by teacher {old.get('teacher')!r}, "
                f"this run uses {new.get('teacher')!r}; use another output folder",
                path=manifest_path,
            )
        # a field added to LabelConfig after the store was made counts as its default value
        a = {**_config_defaults(), **renamed_fields(LabelConfig, old.get("config", {}), path=manifest_path)}
        a = {k: v for k, v in a.items() if k not in EXECUTION_FIELDS}
        b = {k: v for k, v in new.get("config", {}).items() if k not in EXECUTION_FIELDS}
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            parts = ", ".join(f"{k}: {a.get(k)!r} in the store vs {b.get(k)!r} now" for k in diff)
            raise FingerprintMismatch(
                f"config mismatch ({parts}); rerun with the store's settings to "
                "resume, or choose another output folder",
                path=manifest_path,
            )
        if old.get("splits") != new.get("splits"):
            raise FingerprintMismatch(
                "the sampled splits differ from the store's (same config and corpus, "
                "so the sampling code changed); use another output folder",
                path=manifest_path,
            )

    def _write_examples(self, examples: Iterable[Example]) -> None:
        wanted = {i for s in self.manifest["splits"] for i in (*s["dev_ids"], *s["pool_ids"])}
        rows = [e for e in examples if e.id in wanted]
        missing = wanted - {e.id for e in rows}
        if missing:
            raise InputError(
                f"{len(missing)} split example id(s) are not among the given examples, "
                f"e.g. {sorted(missing)[:3]}",
                path=self.root,
            )
        table = pa.table(
            {
                "id": [e.id for e in rows],
                "prompt": [e.prompt for e in rows],
                "response": [e.response for e in rows],
                "metadata": [json.dumps(e.metadata, sort_keys=True, default=str) for e in rows],
            }
        )
        with atomic_path(self.root / EXAMPLES) as tmp:
            pq.write_table(table, tmp)

    # ------------------------------------------------------------------ layout

    @property
    def results_dir(self) -> Path:
        return self.root / RESULTS

    @property
    def teacher(self) -> str:
        return self.manifest.get("teacher", "retrain")

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def split_ids(self) -> list[int]:
        return sorted(self._splits)

    def dev_ids(self, split: int) -> list[str]:
        return list(self._splits[split]["dev_ids"])

    def pool_ids(self, split: int) -> list[str]:
        return list(self._splits[split]["pool_ids"])

    def job_ids(self) -> list[str]:
        """Every planned job, in (split, subset) order."""
        return [job_id(s, k) for s in self.split_ids() for k in range(int(self._splits[s]["n_subsets"]))]

    def done_job_ids(self) -> list[str]:
        planned = set(self.job_ids())
        return sorted(j for j in finished_job_ids(self.results_dir) if j in planned)

    # ------------------------------------------------------------------ writing

    def write_job_result(
        self,
        split: int,
        subset: int,
        member_ids: Sequence[str],
        losses: np.ndarray,
        *,
        dev_ids: Sequence[str] | None = None,
        **extra: Any,
    ) -> Path:
        """Commit one subset's labels atomically (teachers pass ``losses = -group score``)."""
        if split not in self._splits:
            raise InputError(f"split {split} is not in this store", path=self.root)
        if not 0 <= subset < int(self._splits[split]["n_subsets"]):
            raise InputError(f"subset {subset} is outside split {split}'s range", path=self.root)
        result = job_result(
            split, subset, member_ids, self.dev_ids(split) if dev_ids is None else dev_ids, losses, **extra
        )
        self.validate_result(result)
        return write_result(self.results_dir, job_id(split, subset), result)

    def validate_result(self, result: dict[str, Any]) -> None:
        s = int(result["split"])
        if [str(x) for x in result["dev_ids"]] != self.dev_ids(s):
            raise InputError(f"split {s}: result dev ids differ from the manifest's", path=self.root)
        if np.asarray(result["losses"]).shape != (len(self.dev_ids(s)),):
            raise InputError(f"split {s}: losses must have one value per dev example", path=self.root)

    def clean_temp_files(self) -> int:
        return clean_stale_temp_files(self.results_dir)

    # ------------------------------------------------------------------ reading

    def read_job(self, jid: str) -> dict[str, Any]:
        return read_result(self.results_dir, jid)

    def splits(self, *, min_subsets: int = 2, warn: bool = True) -> list[SplitLabels]:
        """Labels of the finished jobs: one :class:`SplitLabels` per split with at least ``min_subsets``
        finished subsets, in split order, subsets in subset order. Unfinished jobs are reported with a
        warning (and in :meth:`progress`)."""
        by_split: dict[int, list[int]] = {}
        for jid in self.done_job_ids():
            s, k = parse_job_id(jid)
            by_split.setdefault(s, []).append(k)
        out = []
        for s in self.split_ids():
            ks = sorted(by_split.get(s, []))
            if len(ks) < min_subsets:
                continue
            dev = self.dev_ids(s)
            members, losses = [], []
            for k in ks:
                r = self.read_job(job_id(s, k))
                if [str(x) for x in r["dev_ids"]] != dev:
                    raise InputError(
                        f"result {job_id(s, k)} has dev ids that differ from the manifest",
                        path=self.results_dir,
                    )
                members.append([str(x) for x in r["member_ids"]])
                losses.append(np.asarray(r["losses"], dtype=np.float64))
            out.append(
                SplitLabels(split=s, dev_ids=dev, subset_ids=ks, members=members, losses=np.stack(losses))
            )
        prog = self.progress()
        if warn and prog.done < prog.total:
            warnings.warn(
                f"label store {self.root}: {prog.total - prog.done} of {prog.total} jobs "
                "are unfinished; using the finished ones",
                stacklevel=2,
            )
        return out

    def examples(self) -> dict[str, Example]:
        table = pq.read_table(self.root / EXAMPLES).to_pydict()
        return {
            i: Example(i, p, r, json.loads(m))
            for i, p, r, m in zip(
                table["id"], table["prompt"], table["response"], table["metadata"], strict=True
            )
        }

    def progress(self) -> LabelProgress:
        done_by: dict[int, int] = {}
        for jid in self.done_job_ids():
            s, _ = parse_job_id(jid)
            done_by[s] = done_by.get(s, 0) + 1
        per = [
            SplitProgress(split=s, done=done_by.get(s, 0), total=int(self._splits[s]["n_subsets"]))
            for s in self.split_ids()
        ]
        done, total = sum(p.done for p in per), sum(p.total for p in per)
        return LabelProgress(done=done, total=total, complete=done == total, per_split=per)

    def stats(self) -> LabelStats:
        """Loss statistics of the finished jobs: overall mean/std and, per split, the spread across
        subsets (the per-dev-example std that Eq. 8 divides by)."""
        per, all_losses = [], []
        for sl in self.splits(min_subsets=1, warn=False):
            spread = sl.losses.std(axis=0)
            all_losses.append(sl.losses.ravel())
            per.append(
                SplitStats(
                    split=sl.split,
                    subsets=len(sl.subset_ids),
                    dev=len(sl.dev_ids),
                    loss_mean=float(sl.losses.mean()),
                    loss_std=float(sl.losses.std()),
                    spread_mean=float(spread.mean()),
                    spread_min=float(spread.min()),
                    spread_max=float(spread.max()),
                    zero_spread_dev=int((spread == 0).sum()),
                )
            )
        flat = np.concatenate(all_losses) if all_losses else np.zeros(0)
        return LabelStats(
            labels=int(flat.size),
            loss_mean=float(flat.mean()) if flat.size else None,
            loss_std=float(flat.std()) if flat.size else None,
            spread_mean=float(np.mean([p.spread_mean for p in per])) if per else None,
            per_split=per,
        )


def job_result(
    split: int,
    subset: int,
    member_ids: Sequence[str],
    dev_ids: Sequence[str],
    losses: np.ndarray,
    **extra: Any,
) -> dict[str, Any]:
    """The result dict of one job, as stored in ``results/`` (string arrays load without pickle)."""
    return {
        "split": int(split),
        "subset": int(subset),
        "member_ids": np.array([str(x) for x in member_ids], dtype=str),
        "dev_ids": np.array([str(x) for x in dev_ids], dtype=str),
        "losses": np.asarray(losses, dtype=np.float64),
        **extra,
    }


def _config_defaults() -> dict[str, Any]:
    return field_defaults(LabelConfig)
