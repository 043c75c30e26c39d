"""Learnable synthetic label splits for encoder-training tests, and the same labels as a real label
store (the ``airsearch.trainers.labels`` writer API)."""

from __future__ import annotations

import numpy as np
from airsearch.trainers.labels import LabelStore, SplitPlan, make_manifest

from airsearch.data.example import Example
from airsearch.labels import SplitLabels

TOPICS = ["apple", "river", "stone", "cloud"]
FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "is",
    "it",
    "that",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "by",
    "one",
]


def synthetic_labels(
    n_splits: int = 4,
    subsets: int = 6,
    size: int = 4,
    n_dev: int = 6,
    seed: int = 0,
    n_filler: int = 6,
    n_corpus: int = 40,
    pool: int = 12,
) -> tuple[list[SplitLabels], dict[str, Example]]:
    """Learnable labels over one corpus (as cross-validation splits are drawn in the paper): a dev
    example's loss falls with the number of subset members that share its topic word."""
    rng = np.random.default_rng(seed)
    examples: dict[str, Example] = {}
    for i in range(n_corpus):
        topic = TOPICS[i % len(TOPICS)]
        words = list(rng.choice(FILLER, size=n_filler))
        words.insert(int(rng.integers(len(words) + 1)), topic)
        half = len(words) // 2
        examples[f"ex{i}"] = Example(
            f"ex{i}", " ".join(words[:half]), " ".join(words[half:]), {"topic": topic}
        )
    ids = list(examples)
    splits = []
    for s in range(n_splits):
        order = rng.permutation(len(ids))
        dev = [ids[j] for j in order[:n_dev]]
        train_pool = [ids[j] for j in order[n_dev : n_dev + pool]]
        members = [list(rng.choice(train_pool, size=size, replace=False)) for _ in range(subsets)]
        topic = {i: examples[i].metadata["topic"] for i in ids}
        losses = [
            [-sum(topic[m] == topic[d] for m in mem) + 0.1 * rng.normal() for d in dev] for mem in members
        ]
        splits.append(SplitLabels(s, dev, list(range(subsets)), members, np.array(losses)))
    return splits, examples


def write_label_store(path, splits, examples) -> str:
    """The synthetic labels as a real label store (the ``airsearch.trainers.labels`` writer API)."""
    plans = [
        SplitPlan(s.split, s.dev_ids, sorted({m for mem in s.members for m in mem}), s.members)
        for s in splits
    ]
    manifest = make_manifest(
        {"synthetic": True}, plans, teacher="synthetic", corpus_fingerprint="c", model_fingerprint="m"
    )
    store = LabelStore.create(path, manifest, examples.values())
    for s in splits:
        for k, members in enumerate(s.members):
            store.write_job_result(s.split, k, members, s.losses[k])
    return str(path)
