"""Build the bundled sample corpus (airsearch/data/sample/) from Natural Instructions v1.

    python scripts/build_sample_corpus.py bigbench-1.0.0.tar.gz

Reads the NI v1 subtasks inside the BIG-bench 1.0.0 sdist (get it with
``pip download --no-deps --no-binary :all: bigbench==1.0.0``), takes SAMPLE_TASKS (20 tasks of
different kinds with short targets and short inputs), and for each task draws, with a seeded RNG,
``--per-task`` training rows and ``--queries-per-task`` held-out query rows (disjoint: a query's input
never occurs among the training rows). Writes ``train.jsonl`` and ``queries.jsonl`` with the fields
id, prompt (compact task definition + blank line + input), response (the target) and task.
The output is deterministic for a given tarball, seed and counts.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from airsearch.data.corpus import write_rows
from airsearch.data.natural_instructions import read_ni_tasks, split_task_rows, task_rows

# 20 tasks: span/yes-no classification, answer, wrong-answer and question generation, typing,
# fact generation, word overlap; from MC-TACO, CosmosQA, WinoGrande, QASC, Essential Terms, MultiRC.
SAMPLE_TASKS = [
    "subtask003_mctaco_question_generation_event_duration",
    "subtask004_mctaco_answer_generation_event_duration",
    "subtask011_mctaco_wrong_answer_generation_event_ordering",
    "subtask018_mctaco_temporal_reasoning_presence",
    "subtask019_mctaco_temporal_reasoning_category",
    "subtask022_cosmosqa_passage_inappropriate_binary",
    "subtask024_cosmosqa_answer_generation",
    "subtask025_cosmosqa_incorrect_answer_generation",
    "subtask033_winogrande_answer_generation",
    "subtask034_winogrande_question_modification_object",
    "subtask036_qasc_topic_word_to_generate_related_fact",
    "subtask037_qasc_generate_related_fact",
    "subtask039_qasc_find_overlapping_words",
    "subtask040_qasc_question_generation",
    "subtask041_qasc_answer_generation",
    "subtask043_essential_terms_answering_incomplete_questions",
    "subtask044_essential_terms_identifying_essential_words",
    "subtask046_miscellaenous_question_typing",
    "subtask047_misc_answering_science_questions",
    "subtask050_multirc_answerability",
]
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "airsearch" / "data" / "sample"


def build(
    tarball: Path,
    tasks: list[str],
    *,
    per_task: int,
    queries_per_task: int,
    seed: int,
    max_input_chars: int | None,
) -> tuple[list[dict], list[dict]]:
    """Seeded (train, queries) rows for ``tasks``; one RNG per task so tasks do not affect each other."""
    ni = read_ni_tasks(tarball, tasks)
    train, queries = [], []
    for name in tasks:
        rows = task_rows(ni[name], max_input_chars=max_input_chars)
        t, q = split_task_rows(rows, per_task, queries_per_task, random.Random(f"{seed}:{name}"))
        train += t
        queries += q
    return train, queries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tarball", type=Path, help="path to bigbench-1.0.0.tar.gz")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--per-task", type=int, default=150)
    ap.add_argument("--queries-per-task", type=int, default=10)
    ap.add_argument("--max-input-chars", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    train, queries = build(
        args.tarball,
        SAMPLE_TASKS,
        per_task=args.per_task,
        queries_per_task=args.queries_per_task,
        seed=args.seed,
        max_input_chars=args.max_input_chars,
    )
    write_rows(args.out / "train.jsonl", train)
    write_rows(args.out / "queries.jsonl", queries)
    size = sum((args.out / f).stat().st_size for f in ("train.jsonl", "queries.jsonl"))
    print(
        json.dumps(
            {
                "train_rows": len(train),
                "query_rows": len(queries),
                "tasks": len(SAMPLE_TASKS),
                "bytes": size,
                "seed": args.seed,
            }
        ),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
