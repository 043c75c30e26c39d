"""Natural Instructions v1 rows, read from the BIG-bench 1.0.0 source distribution.

The BIG-bench sdist (``pip download --no-deps --no-binary :all: bigbench==1.0.0``) holds 61 NI v1
subtasks under ``benchmark_tasks/natural_instructions/subtask*/task.json``. Each task has a
``task_prefix``/``description`` that starts with ``Definition: ...`` and ``examples`` with an
``input`` string and a ``target`` list. This module turns them into airsearch rows::

    {"id": "ni041-00012", "prompt": "<definition>\\n\\n<input>", "response": "<target[0]>",
     "task": "subtask041_qasc_answer_generation"}

Ids name the subtask number and the example's index in its task file, so they are stable.
Used by ``scripts/build_sample_corpus.py`` (the bundled sample) and ``scripts/build_ni_corpus.py``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airsearch.errors import InputError

TASK_DIR_MARKER = "/natural_instructions/subtask"
DEFINITION_MAX_CHARS = 240
_DEFINITION_END = re.compile(r"\s*(Things to Avoid:|Emphasis\s*/\s*Caution:|Prompt:)")


@dataclasses.dataclass(frozen=True)
class NITask:
    """One NI v1 subtask: its name, a compact definition and its (input, target) examples."""

    name: str
    definition: str
    examples: list[tuple[str, str]]

    @property
    def number(self) -> int:
        return int(re.match(r"subtask(\d+)", self.name).group(1))  # type: ignore[union-attr]


def compact_definition(text: str, max_chars: int = DEFINITION_MAX_CHARS) -> str:
    """The ``Definition:`` sentence(s) of a task, cut at a sentence (else word) end to ``max_chars``."""
    text = text.strip()
    if text.startswith("Definition:"):
        text = text[len("Definition:") :]
    text = _DEFINITION_END.split(text, maxsplit=1)[0]
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    cut = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    if cut >= max_chars // 3:
        return head[: cut + 1]
    return head[: head.rfind(" ")].rstrip(",;:") + " ..."


def read_ni_tasks(tarball: str | Path, names: Iterable[str] | None = None) -> dict[str, NITask]:
    """Read NI v1 tasks (all, or those in ``names``) from the BIG-bench sdist tarball, by task name."""
    tarball = Path(tarball)
    if not tarball.is_file():
        raise InputError(
            "BIG-bench sdist not found (pip download --no-deps --no-binary :all: bigbench==1.0.0)",
            path=tarball,
        )
    wanted = set(names) if names is not None else None
    tasks: dict[str, NITask] = {}
    with tarfile.open(tarball) as tf:
        for member in tf:
            if TASK_DIR_MARKER not in member.name or not member.name.endswith("/task.json"):
                continue
            name = member.name.rsplit("/", 2)[-2]
            if wanted is not None and name not in wanted:
                continue
            data: dict[str, Any] = json.load(tf.extractfile(member))  # type: ignore[arg-type]
            definition = compact_definition(data.get("task_prefix") or data.get("description") or "")
            examples = []
            for ex in data["examples"]:
                target = ex.get("target")
                if isinstance(target, list):
                    target = target[0] if target else ""
                examples.append((str(ex.get("input", "")).strip(), str(target or "").strip()))
            tasks[name] = NITask(name, definition, examples)
    if wanted is not None and (missing := wanted - set(tasks)):
        raise InputError(f"NI tasks not in the tarball: {sorted(missing)}", path=tarball)
    return tasks


def task_rows(task: NITask, *, max_input_chars: int | None = None) -> list[dict[str, Any]]:
    """All usable rows of a task: non-empty input and target, first occurrence of each input only
    (so a held-out row's prompt never appears among the training rows)."""
    rows, seen = [], set()
    for index, (inp, target) in enumerate(task.examples):
        if not inp or not target or inp in seen:
            continue
        if max_input_chars is not None and len(inp) > max_input_chars:
            continue
        seen.add(inp)
        rows.append(
            {
                "id": f"ni{task.number:03d}-{index:05d}",
                "prompt": f"{task.definition}\n\n{inp}",
                "response": target,
                "task": task.name,
            }
        )
    return rows


def split_task_rows(
    rows: list[dict[str, Any]], n_train: int, n_queries: int, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded, disjoint (train, queries) draw from one task's rows, each kept in file order."""
    picked = rng.sample(range(len(rows)), min(len(rows), n_train + n_queries))
    queries = sorted(picked[:n_queries])
    train = sorted(picked[n_queries:])
    return [rows[i] for i in train], [rows[i] for i in queries]
