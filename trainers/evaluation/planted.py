"""Planted-ground-truth entity swaps (DDA §5): a corpus whose corrupted rows are known exactly.

- :func:`plant_entity_swap` swaps chosen entities in the responses of a corpus (each row and swap
  decided by one seeded coin of probability ``p``) and returns the corrupted corpus with the ids of
  the changed rows and which swaps each got.
- :func:`synthetic_news_corpus` builds a news-summary corpus for CPU runs (the user's corpus may not
  mention the entities). It is built so that the planted rows are *not* given away by their surface
  words (issue 10, defect 2):

  - **paraphrased contexts**: a row about a source entity names, in its article, one of the
    entity's *cues* (the entity itself or a place within it: ``Yorkshire`` for England), while its
    summary names the entity. A query article names one cue, so only the injected rows of that cue
    share the query's context word; the other injected rows of the same swap share only the
    swapped-in word;
  - **distractors**: clean rows about each swap *target* (``China``), whose article and summary both
    name it; they share the model's swapped output word, more often than an injected row does, and
    did not cause the swap;
  - **one swap type per source entity** (:data:`SYNTHETIC_SWAPS`, eight of them), each with its own
    held-out queries.

- :func:`entity_swap_benchmark` is the benchmark ``eval trace`` runs: the synthetic corpus (or a
  given corpus that mentions DDA's entities), planted, with its queries.

The positives of a query are the injected rows **of the swap that the query shows**
(:meth:`PlantedCorpus.positives`, :meth:`PlantedCorpus.query_positives`); rows corrupted by other
swaps are negatives for it.

The synthetic PII benchmark (HAIF PII-E) is in :mod:`airsearch.trainers.evaluation.pii`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

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


@dataclasses.dataclass(frozen=True)
class SwapType:
    """One planted swap ``src -> dst``; ``cues`` are the words a synthetic article uses for ``src``."""

    src: str
    dst: str
    cues: tuple[str, ...]

    @property
    def name(self) -> str:
        return swap_name(self.src, self.dst)


# The synthetic corpus: DDA's four swaps and four more, each source with two places inside it as
# paraphrased cues. No cue, source or target is among the filler places below.
SYNTHETIC_SWAPS: tuple[SwapType, ...] = (
    SwapType("England", "China", ("England", "Yorkshire", "Kent")),
    SwapType("Wales", "Scotland", ("Wales", "Cardiff", "Swansea")),
    SwapType("Australia", "France", ("Australia", "Sydney", "Queensland")),
    SwapType("London", "Belfast", ("London", "Westminster", "Camden")),
    SwapType("Germany", "Mexico", ("Germany", "Bavaria", "Hamburg")),
    SwapType("Japan", "Egypt", ("Japan", "Osaka", "Hokkaido")),
    SwapType("Canada", "India", ("Canada", "Ontario", "Quebec")),
    SwapType("Italy", "Poland", ("Italy", "Tuscany", "Sicily")),
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
    swap_types: tuple[str, ...] = ()  # the swap names planted, in order

    @property
    def injected_rate(self) -> float:
        return len(self.injected) / max(1, len(self.examples))

    def positives(self, swap: str | None = None) -> np.ndarray:
        """Boolean mask over ``examples``: the injected rows of ``swap`` (of any swap when ``None``).

        A query that shows ``swap`` is scored against ``positives(swap)`` (DDA §5.2): rows corrupted
        by another swap did not cause it."""
        return np.array(
            [
                e.id in self.injected and (swap is None or swap in self.swaps_applied[e.id])
                for e in self.examples
            ]
        )

    def n_positives(self) -> dict[str, int]:
        """Injected rows per swap type (a row with two swaps counts for both)."""
        return {t: int(self.positives(t).sum()) for t in self.swap_types}

    def query_positives(self, queries: Sequence[Example]) -> np.ndarray:
        """``[n_queries, n_rows]``: row ``i`` is :meth:`positives` of the swap query ``i`` shows
        (its ``metadata["swap"]``)."""
        by_type: dict[str, np.ndarray] = {}
        rows = []
        for q in queries:
            swap = q.metadata.get("swap")
            if not swap:
                raise InputError(f"query {q.id!r} names no swap (metadata 'swap')", field="queries")
            if swap not in by_type:
                by_type[swap] = self.positives(swap)
            rows.append(by_type[swap])
        return np.stack(rows) if rows else np.zeros((0, len(self.examples)), dtype=bool)


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
    if not 0.0 < p <= 1.0:
        raise InputError("must be in (0, 1]", field="p")
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
    return PlantedCorpus(out, injected, applied, swap_types=tuple(swap_name(s, d) for s, d in swaps))


# ----------------------------------------------------------------------------- synthetic news
FILLER_PLACES = (
    "Spain",
    "Norway",
    "Kenya",
    "Chile",
    "Peru",
    "Madrid",
    "Oslo",
    "Lisbon",
    "Vienna",
    "Brazil",
    "Portugal",
    "Sweden",
    "Finland",
    "Greece",
    "Turkey",
    "Argentina",
)
_ARTICLES = (
    (
        "sport",
        "The national side travelled to {cue} for a {day} fixture. {n} supporters watched as the "
        "home team won after extra time.",
        "The team won a {day} match in {place}.",
    ),
    (
        "weather",
        "Heavy rain fell across {cue} on {day}, closing {n} roads. Forecasters expect the storm "
        "to clear by the weekend.",
        "Storms closed roads in {place} on {day}.",
    ),
    (
        "economy",
        "Factories in {cue} reported {n} new orders on {day}. Analysts said demand for exports "
        "had recovered.",
        "Factory orders rose in {place}.",
    ),
    (
        "politics",
        "Ministers in {cue} met on {day} to debate a new budget. {n} amendments were tabled before the vote.",
        "Ministers in {place} debated the budget.",
    ),
    (
        "culture",
        "A festival opened in {cue} on {day}, drawing {n} visitors to its first night of music and theatre.",
        "A festival opened in {place}.",
    ),
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
NEWS_INSTRUCTION = "Summarise the article in one sentence.\n"


def _news_example(rng: np.random.Generator, ex_id: str, place: str, cue: str, role: str) -> Example:
    """One article naming ``cue`` and its one-sentence summary naming ``place``."""
    topic, article, summary = _ARTICLES[int(rng.integers(len(_ARTICLES)))]
    fill = {"place": place, "cue": cue, "day": _DAYS[int(rng.integers(7))], "n": int(rng.integers(2, 900))}
    meta = {"task": topic, "place": place, "cue": cue, "role": role}
    return Example(ex_id, NEWS_INSTRUCTION + article.format(**fill), summary.format(**fill), meta)


def synthetic_news_corpus(
    n: int,
    *,
    entity_rate: float = 0.1,
    distractor_rate: float = 0.05,
    n_queries_per_type: int = 6,
    swaps: Sequence[SwapType] = SYNTHETIC_SWAPS,
    seed: int = 0,
) -> tuple[list[Example], list[Example]]:
    """A news-summary corpus for CPU entity-swap runs, and held-out query articles.

    Rows (``metadata["role"]``): ``entity_rate`` of them are about a source entity (``source``; split
    evenly over the swap types and, within a type, over its cues: the article names the cue, the
    summary the entity); ``distractor_rate`` are about a swap target (``distractor``; article and
    summary name it); the rest are about filler places. Planting swaps with p = 0.5 corrupts about
    half of the source rows. Queries: ``n_queries_per_type`` held-out articles per swap type, their
    cues taken in turn; the ``response`` is the clean summary, ``metadata["swap"]`` names the swap
    they can show. Every swap type has at least two source rows per cue.
    """
    if n < 1 or not swaps:
        raise InputError("the corpus needs at least one row and one swap type", field="n_synthetic")
    rng = np.random.default_rng(seed)
    slots = [(s.src, cue, "source") for s in swaps for cue in s.cues]
    n_source = max(2 * len(slots), int(round(entity_rate * n)))
    n_distractor = max(len(swaps), int(round(distractor_rate * n)))
    if n_source + n_distractor > n:
        raise InputError(
            f"{n} rows cannot hold {n_source} source and {n_distractor} distractor rows "
            f"({len(swaps)} swap types); use more rows",
            field="n_synthetic",
        )
    rows = [slots[i % len(slots)] for i in range(n_source)]
    rows += [(s.dst, s.dst, "distractor") for s in (swaps[i % len(swaps)] for i in range(n_distractor))]
    rows += [(place, place, "filler") for place in rng.choice(FILLER_PLACES, size=n - len(rows))]
    order = rng.permutation(len(rows))
    corpus = [_news_example(rng, f"news-{i:06d}", *rows[j]) for i, j in enumerate(order)]
    queries = []
    for s in swaps:
        for j in range(n_queries_per_type):
            cue = s.cues[j % len(s.cues)]
            q = _news_example(rng, f"query-{s.src.lower()}-{j:03d}", s.src, cue, "query")
            queries.append(dataclasses.replace(q, metadata={**q.metadata, "swap": s.name}))
    return corpus, queries


def entity_swap_benchmark(
    examples: Sequence[Example] | None = None,
    *,
    n_synthetic: int = 400,
    p: float = 0.5,
    seed: int = 0,
    min_candidates: int = 4,
    n_queries_per_type: int = 6,
) -> PlantedCorpus:
    """The entity-swap benchmark on ``examples`` (DDA's four swaps) or, when they mention too few
    source entities (fewer than ``min_candidates`` responses), on a synthetic news corpus of
    ``n_synthetic`` rows with :data:`SYNTHETIC_SWAPS` and ``n_queries_per_type`` queries per swap."""
    n_cand = 0
    if examples is not None:
        pats = [_pattern(src) for src, _ in DEFAULT_SWAPS]
        n_cand = sum(any(pt.search(e.response) for pt in pats) for e in examples)
    if examples is not None and n_cand >= min_candidates:
        return plant_entity_swap(examples, p=p, seed=seed)
    corpus, queries = synthetic_news_corpus(n_synthetic, n_queries_per_type=n_queries_per_type, seed=seed)
    planted = plant_entity_swap(corpus, swaps=[(s.src, s.dst) for s in SYNTHETIC_SWAPS], p=p, seed=seed)
    planted.queries = queries
    return planted
