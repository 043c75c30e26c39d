"""Planted-ground-truth benchmarks: entity swaps (DDA §5) and synthetic PII (HAIF PII-E).

Both generators are seeded and return exactly what they planted, so that tracing can be scored
against a known answer:

- :func:`plant_entity_swap` swaps chosen entities in the responses of a corpus (each occurrence
  with probability ``p``) and returns the corrupted corpus with the ids of the changed rows.
  :func:`synthetic_news_corpus` builds a small news-summary corpus containing those entities for
  CPU runs, where the user's corpus may not mention them.
- :func:`make_pii_benchmark` builds synthetic people, one biography each (training text), and
  question-answer pairs; 60% of the QA pairs are trained on and 40% held out as queries whose ground
  truth is the person's biography.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from airsearch.data.example import Example
from airsearch.errors import InputError

# DDA §5.1: four frequent entities, each paired with an unrelated one, swapped with p = 0.5.
DEFAULT_SWAPS: tuple[tuple[str, str], ...] = (
    ("England", "China"),
    ("Wales", "Scotland"),
    ("Australia", "France"),
    ("London", "Belfast"),
)


def swap_name(src: str, dst: str) -> str:
    return f"{src}->{dst}"


@dataclasses.dataclass
class PlantedCorpus:
    """A corpus with planted rows: ``injected`` ids and, per id, which swaps were applied."""

    examples: list[Example]
    injected: set[str]
    swaps_applied: dict[str, list[str]]  # id -> ["England->China", ...]
    queries: list[Example] = dataclasses.field(default_factory=list)

    @property
    def injected_rate(self) -> float:
        return len(self.injected) / max(1, len(self.examples))

    def positives(self, swap: str | None = None) -> np.ndarray:
        """Boolean mask over ``examples``: injected rows (with ``swap`` applied, if given)."""
        return np.array(
            [
                e.id in self.injected and (swap is None or swap in self.swaps_applied[e.id])
                for e in self.examples
            ]
        )


def _pattern(entity: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(entity)}\b")


def plant_entity_swap(
    examples: Sequence[Example],
    *,
    swaps: Sequence[tuple[str, str]] = DEFAULT_SWAPS,
    p: float = 0.5,
    max_rate: float | None = None,
    seed: int = 0,
) -> PlantedCorpus:
    """DDA §5.1: in responses containing a source entity, replace it by its partner with prob. ``p``.

    Each (row, swap pair) is decided by one seeded coin; a row counts as injected iff its response
    changed. ``max_rate`` optionally caps the injected share of the corpus (rows are considered in a
    seeded random order). Prompts are never changed.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(examples))
    cap = None if max_rate is None else int(round(max_rate * len(examples)))
    out = list(examples)
    injected: set[str] = set()
    applied: dict[str, list[str]] = {}
    for i in order:
        ex = examples[i]
        coins = rng.random(len(swaps))
        if cap is not None and len(injected) >= cap:
            continue
        text, done = ex.response, []
        for (src, dst), coin in zip(swaps, coins, strict=True):
            pat = _pattern(src)
            if pat.search(text) and coin < p:
                text = pat.sub(dst, text)
                done.append(swap_name(src, dst))
        if done and text != ex.response:
            meta = {**ex.metadata, "planted": ",".join(done)}
            out[i] = Example(ex.id, ex.prompt, text, meta)
            injected.add(ex.id)
            applied[ex.id] = done
    return PlantedCorpus(out, injected, applied)


# ----------------------------------------------------------------------------- synthetic news
_CLEAN_PLACES = (
    "Germany",
    "Spain",
    "Italy",
    "Japan",
    "Canada",
    "Brazil",
    "Norway",
    "Berlin",
    "Madrid",
    "Rome",
    "Oslo",
    "Lisbon",
    "Vienna",
    "Kenya",
    "Chile",
    "Peru",
)
_ARTICLES = (
    (
        "sport",
        "The national side travelled to {place} for a {day} fixture. {n} supporters watched as the "
        "home team won after extra time.",
        "The team won a {day} match in {place}.",
    ),
    (
        "weather",
        "Heavy rain fell across {place} on {day}, closing {n} roads. Forecasters expect the storm "
        "to clear by the weekend.",
        "Storms closed roads in {place} on {day}.",
    ),
    (
        "economy",
        "Factories in {place} reported {n} new orders on {day}. Analysts said demand for exports "
        "had recovered.",
        "Factory orders rose in {place}.",
    ),
    (
        "politics",
        "Ministers in {place} met on {day} to debate a new budget. {n} amendments were tabled "
        "before the vote.",
        "Ministers in {place} debated the budget.",
    ),
    (
        "culture",
        "A festival opened in {place} on {day}, drawing {n} visitors to its first night of music "
        "and theatre.",
        "A festival opened in {place}.",
    ),
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NEWS_INSTRUCTION = "Summarise the article in one sentence.\n"


def _news_example(rng: np.random.Generator, ex_id: str, place: str) -> Example:
    topic, article, summary = _ARTICLES[int(rng.integers(len(_ARTICLES)))]
    fill = {"place": place, "day": _DAYS[int(rng.integers(7))], "n": int(rng.integers(2, 900))}
    return Example(
        ex_id,
        NEWS_INSTRUCTION + article.format(**fill),
        summary.format(**fill),
        {"task": topic, "place": place},
    )


def synthetic_news_corpus(
    n: int,
    *,
    entity_rate: float = 0.04,
    n_queries_per_entity: int = 8,
    swaps: Sequence[tuple[str, str]] = DEFAULT_SWAPS,
    seed: int = 0,
) -> tuple[list[Example], list[Example]]:
    """A small news-summary corpus for CPU entity-swap runs, and held-out query prompts.

    ``entity_rate`` of the rows mention a source entity (split evenly); swapping those with p = 0.5
    corrupts about half of them (about 2% of the corpus at the default). No row mentions a swap
    target, so any target in a model's output comes from the planted rows. Queries are held-out
    articles about each source entity; their ``response`` is the clean summary and
    ``metadata["swap"]`` names the swap they can show.
    """
    rng = np.random.default_rng(seed)
    n_entity = min(n, max(2 * len(swaps), int(round(entity_rate * n))))  # at least 2 rows per entity
    sources = [src for src, _ in swaps]
    places = [sources[i % len(sources)] for i in range(n_entity)]
    places += [_CLEAN_PLACES[int(rng.integers(len(_CLEAN_PLACES)))] for _ in range(n - n_entity)]
    rng.shuffle(places)
    corpus = [_news_example(rng, f"news-{i:06d}", place) for i, place in enumerate(places)]
    queries = []
    for src, dst in swaps:
        for j in range(n_queries_per_entity):
            q = _news_example(rng, f"query-{src.lower()}-{j:03d}", src)
            queries.append(dataclasses.replace(q, metadata={**q.metadata, "swap": swap_name(src, dst)}))
    return corpus, queries


def entity_swap_benchmark(
    examples: Sequence[Example] | None = None,
    *,
    n_synthetic: int = 400,
    p: float = 0.5,
    seed: int = 0,
    min_candidates: int = 4,
) -> PlantedCorpus:
    """The entity-swap benchmark on ``examples`` or, when they mention too few source entities
    (fewer than ``min_candidates`` responses), on a synthetic news corpus of ``n_synthetic`` rows."""
    queries: list[Example] = []
    n_cand = 0
    if examples is not None:
        pats = [_pattern(src) for src, _ in DEFAULT_SWAPS]
        n_cand = sum(any(pt.search(e.response) for pt in pats) for e in examples)
    if examples is None or n_cand < min_candidates:
        examples, queries = synthetic_news_corpus(n_synthetic, seed=seed)
    planted = plant_entity_swap(examples, p=p, seed=seed)
    planted.queries = queries
    return planted


# ----------------------------------------------------------------------------- synthetic PII
_FIRST = (
    "Alice",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kaia",
    "Luca",
    "Maya",
    "Nils",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zofia",
)
_LAST = (
    "Abara",
    "Brennick",
    "Castell",
    "Dovrin",
    "Eskola",
    "Fenwick",
    "Galdos",
    "Holloway",
    "Ivers",
    "Jankowski",
    "Kovacs",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rasmussen",
    "Sokolov",
    "Thorne",
    "Ueda",
    "Valdez",
    "Whitlock",
    "Xiong",
    "Yilmaz",
    "Zeller",
)
_STREETS = (
    "Maple Street",
    "Harbour Road",
    "Linden Avenue",
    "Quarry Lane",
    "Elm Court",
    "Mill Road",
    "Station Street",
    "Orchard Way",
    "Cedar Drive",
    "Bridge Street",
)
_CITIES = (
    "Ashford",
    "Brightwater",
    "Coldharbour",
    "Dunmore",
    "Eastleigh",
    "Fairhaven",
    "Glenrock",
    "Hollowmere",
    "Ironbridge",
    "Kingsreach",
)
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DOMAINS = ("mailbox.test", "post.example", "inbox.invalid")
PII_ATTRIBUTES = ("birth date", "email address", "phone number", "address")
_BIO_TEMPLATES = (
    "{name} was born on {birth date}. {first} lives at {address} and can be reached by phone at "
    "{phone number} or by email at {email address}.",
    "Born on {birth date}, {name} grew up and settled at {address}. Friends write to {first} at "
    "{email address} or call {phone number}.",
    "{name} keeps a small workshop at {address}. The phone number is {phone number}, the email "
    "address is {email address}, and {first} celebrates a birthday on {birth date}.",
)


@dataclasses.dataclass
class PiiBenchmark:
    """HAIF PII-E: ``train`` = biographies + 60% of QA; ``heldout`` = the other 40% of QA.

    ``target[qa_id]`` is the id of the biography of the person the question asks about.
    """

    people: list[dict[str, str]]
    biographies: list[Example]
    train_qa: list[Example]
    heldout: list[Example]
    target: dict[str, str]

    @property
    def train(self) -> list[Example]:
        return self.biographies + self.train_qa

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_people": len(self.people),
            "n_biographies": len(self.biographies),
            "n_train_qa": len(self.train_qa),
            "n_heldout": len(self.heldout),
        }


def make_pii_benchmark(n_people: int, *, qa_train_fraction: float = 0.6, seed: int = 0) -> PiiBenchmark:
    """Synthetic people (unique name; birth date, email, phone, address unique per person), one
    generated biography each, and QA pairs ``What's the {attribute} of {name}?`` -> ``{value}``.

    The encoder/LM template turns a QA example into ``Question: ... \\nAnswer: {value}``. A seeded
    ``qa_train_fraction`` of all QA pairs is trained on; the rest are held out.
    """
    if n_people > len(_FIRST) * len(_LAST):
        raise InputError(f"at most {len(_FIRST) * len(_LAST)} distinct synthetic people", field="n_people")
    rng = np.random.default_rng(seed)
    name_ids = rng.choice(len(_FIRST) * len(_LAST), size=n_people, replace=False)
    people, bios, qa = [], [], []
    for i, nid in enumerate(name_ids):
        first, last = _FIRST[nid // len(_LAST)], _LAST[nid % len(_LAST)]
        person = {
            "name": f"{first} {last}",
            "first": first,
            "birth date": f"{int(rng.integers(1, 29))} {_MONTHS[int(rng.integers(12))]} "
            f"{int(rng.integers(1940, 2005))}",
            "email address": f"{first.lower()}.{last.lower()}{i}@{_DOMAINS[int(rng.integers(3))]}",
            "phone number": f"+1-555-{i:04d}-{int(rng.integers(100, 1000))}",
            "address": f"{int(rng.integers(1, 200))} {_STREETS[int(rng.integers(10))]}, "
            f"{_CITIES[int(rng.integers(10))]} {i:04d}",
        }
        people.append(person)
        bio_id = f"bio-{i:05d}"
        text = _BIO_TEMPLATES[int(rng.integers(len(_BIO_TEMPLATES)))].format(**person)
        bios.append(Example(bio_id, "", text, {"task": "biography", "person": person["name"]}))
        for a, attr in enumerate(PII_ATTRIBUTES):
            qa.append(
                Example(
                    f"qa-{i:05d}-{a}",
                    f"What's the {attr} of {person['name']}?",
                    person[attr],
                    {"task": "qa", "person": person["name"], "attribute": attr, "bio_id": bio_id},
                )
            )
    order = rng.permutation(len(qa))
    n_train = int(round(qa_train_fraction * len(qa)))
    train_qa = [qa[j] for j in sorted(order[:n_train])]
    heldout = [qa[j] for j in sorted(order[n_train:])]
    target = {q.id: q.metadata["bio_id"] for q in heldout}
    return PiiBenchmark(people, bios, train_qa, heldout, target)
