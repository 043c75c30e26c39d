"""Build a larger Natural Instructions v1 corpus for benchmarks, in the sample corpus's row format.

    python scripts/build_ni_corpus.py bigbench-1.0.0.tar.gz --tasks 40 --per-task 1000 \\
        --holdout-tasks 41,50 --out data/ni40

Writes into ``--out``:
- ``train.jsonl``: up to ``--per-task`` rows from each of ``--tasks`` training tasks;
- ``queries.jsonl``: ``--queries-per-task`` held-out rows per training task (disjoint from train);
- ``holdout.jsonl``: rows of the ``--holdout-tasks`` (whole tasks kept out of training; all their rows
  unless ``--holdout-per-task``);
- ``manifest.json``: the arguments, the tasks and the row counts.

Rows: id, prompt (compact definition + blank line + input), response, task — see
``airsearch.data.natural_instructions``. With ``--tasks N`` below the number of eligible tasks, the N
are drawn with the seed. The build is deterministic for a given tarball and arguments.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from airsearch.atomic import write_json_atomic
from airsearch.data.corpus import write_rows
from airsearch.data.natural_instructions import read_ni_tasks, split_task_rows, task_rows


def _resolve(spec: str, names: list[str]) -> list[str]:
    """Task names from ``"41,subtask050_multirc_answerability"``-like specs (numbers or full names)."""
    out = []
    for item in filter(None, re.split(r"[,\s]+", spec)):
        match = [
            n for n in names if n == item or (item.isdigit() and n.startswith(f"subtask{int(item):03d}_"))
        ]
        if not match:
            raise SystemExit(f"unknown NI task: {item}")
        out += match
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarball", type=Path, help="path to bigbench-1.0.0.tar.gz")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tasks", type=int, default=None, help="training tasks (default: all not held out)")
    ap.add_argument("--per-task", type=int, default=1000)
    ap.add_argument("--queries-per-task", type=int, default=10)
    ap.add_argument("--holdout-tasks", default="", help="comma-separated task numbers or names")
    ap.add_argument("--holdout-per-task", type=int, default=None)
    ap.add_argument("--max-input-chars", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    ni = read_ni_tasks(args.tarball)
    names = sorted(ni)
    holdout = _resolve(args.holdout_tasks, names)
    eligible = [n for n in names if n not in holdout]
    chosen = eligible
    if args.tasks is not None and args.tasks < len(eligible):
        chosen = sorted(random.Random(args.seed).sample(eligible, args.tasks))

    train, queries, held = [], [], []
    for name in chosen:
        rows = task_rows(ni[name], max_input_chars=args.max_input_chars)
        t, q = split_task_rows(
            rows, args.per_task, args.queries_per_task, random.Random(f"{args.seed}:{name}")
        )
        train += t
        queries += q
    for name in holdout:
        rows = task_rows(ni[name], max_input_chars=args.max_input_chars)
        n = len(rows) if args.holdout_per_task is None else args.holdout_per_task
        held += split_task_rows(rows, n, 0, random.Random(f"{args.seed}:{name}"))[0]

    write_rows(args.out / "train.jsonl", train)
    write_rows(args.out / "queries.jsonl", queries)
    write_rows(args.out / "holdout.jsonl", held)
    manifest = {
        "source": args.tarball.name,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "tarball"},
        "train_tasks": chosen,
        "holdout_tasks": holdout,
        "rows": {"train": len(train), "queries": len(queries), "holdout": len(held)},
    }
    write_json_atomic(args.out / "manifest.json", manifest)
    print(f"{args.out}: {manifest['rows']} over {len(chosen)} training tasks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
