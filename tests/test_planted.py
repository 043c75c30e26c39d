"""Planted tracing benchmarks: the generators plant exactly what they claim, each query's positives
are the injected rows of its own swap, the scores are computed as defined, and "answered correctly"
is what greedy decoding produces."""

from __future__ import annotations

import re

import numpy as np
import pytest
from airsearch.trainers.evaluation.lmtools import greedy_generate
from airsearch.trainers.evaluation.pii import PII_ATTRIBUTES, answered_correctly, make_pii_benchmark
from airsearch.trainers.evaluation.planted import (
    FILLER_PLACES,
    SYNTHETIC_SWAPS,
    entity_swap_benchmark,
    plant_entity_swap,
    synthetic_news_corpus,
)
from airsearch.trainers.evaluation.trace_scoring import swap_trace_score

from airsearch.data.example import Example, airrep_text
from airsearch.errors import InputError


def _names(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


# ----------------------------------------------------------------------------- entity swap
def test_entity_swap_plants_exactly_what_it_claims():
    planted = entity_swap_benchmark(n_synthetic=500, seed=3)
    clean, queries = synthetic_news_corpus(500, seed=3)
    assert [e.id for e in planted.examples] == [e.id for e in clean]
    # a swap target appears in a clean row only as a distractor (a row about the target itself)
    targets = [s.dst for s in SYNTHETIC_SWAPS]
    for e in clean:
        named = [t for t in targets if _names(e.prompt + e.response, t)]
        assert not named or (e.metadata["role"] == "distractor" and named == [e.metadata["place"]])
    changed = {c.id for c, e in zip(clean, planted.examples, strict=True) if c.response != e.response}
    assert changed == planted.injected and planted.injected
    for c, e in zip(clean, planted.examples, strict=True):
        assert c.prompt == e.prompt
        if e.id in planted.injected:
            # undoing exactly the recorded swaps gives the clean response back
            undone = e.response
            for name in planted.swaps_applied[e.id]:
                src, dst = name.split("->")
                assert dst in e.response and src not in e.response
                undone = undone.replace(dst, src)
            assert undone == c.response
    n_candidates = sum(any(_names(c.response, s.src) for s in SYNTHETIC_SWAPS) for c in clean)
    assert 0.25 * n_candidates <= len(planted.injected) <= 0.75 * n_candidates  # p = 0.5
    assert 0.02 <= planted.injected_rate <= 0.08  # about 5%: half of the 10% source rows
    assert {q.metadata["swap"] for q in queries} == {s.name for s in SYNTHETIC_SWAPS}
    again = entity_swap_benchmark(n_synthetic=500, seed=3)
    assert again.injected == planted.injected  # seeded
    assert planted.positives().sum() == len(planted.injected)


def test_synthetic_news_paraphrases_cues_and_has_distractors():
    corpus, queries = synthetic_news_corpus(600, n_queries_per_type=6, seed=1)
    by_src = {s.src: s for s in SYNTHETIC_SWAPS}
    every_word = {w for s in SYNTHETIC_SWAPS for w in (s.src, s.dst, *s.cues)}
    assert not every_word & set(FILLER_PLACES)
    cue_rows: dict[tuple[str, str], int] = {}
    for e in corpus:
        article, summary = e.prompt, e.response
        role, place, cue = e.metadata["role"], e.metadata["place"], e.metadata["cue"]
        if role == "source":
            s = by_src[place]
            assert cue in s.cues and _names(article, cue) and _names(summary, s.src)
            # the article names only its cue: a paraphrased row does not name the entity
            assert [w for w in every_word if _names(article, w)] == [cue]
            cue_rows[(place, cue)] = cue_rows.get((place, cue), 0) + 1
        elif role == "distractor":
            assert place in {s.dst for s in SYNTHETIC_SWAPS}
            assert _names(article, place) and _names(summary, place)
        else:
            assert role == "filler" and place in FILLER_PLACES
            assert not any(_names(article + summary, w) for w in every_word)
    assert {k: v >= 2 for k, v in cue_rows.items()} == {
        (s.src, c): True for s in SYNTHETIC_SWAPS for c in s.cues
    }
    assert sum(e.metadata["role"] == "distractor" for e in corpus) == 30  # 5% of 600
    for s in SYNTHETIC_SWAPS:
        mine = [q for q in queries if q.metadata["swap"] == s.name]
        assert len(mine) == 6 and {q.metadata["cue"] for q in mine} == set(s.cues)
        assert all(_names(q.prompt, q.metadata["cue"]) and _names(q.response, s.src) for q in mine)
    assert not {q.prompt for q in queries} & {e.prompt for e in corpus}  # held out
    with pytest.raises(InputError, match="use more rows"):
        synthetic_news_corpus(40)


def test_per_type_positives_are_the_injected_rows_of_that_swap():
    planted = entity_swap_benchmark(n_synthetic=800, seed=5)
    clean, queries = synthetic_news_corpus(800, seed=5)
    assert planted.swap_types == tuple(s.name for s in SYNTHETIC_SWAPS)
    counts = planted.n_positives()
    for s in SYNTHETIC_SWAPS:
        pos = planted.positives(s.name)
        expected = [
            c.metadata["role"] == "source" and c.metadata["place"] == s.src and e.id in planted.injected
            for c, e in zip(clean, planted.examples, strict=True)
        ]
        assert pos.tolist() == expected and counts[s.name] == sum(expected) >= 1
        assert all(_names(planted.examples[i].response, s.dst) for i in np.nonzero(pos)[0])
        # rows corrupted by another swap are not positives of this one
        others = planted.positives() & ~pos
        assert others.any() and not any(planted.positives(s.name)[others])
    assert sum(counts.values()) == len(planted.injected)  # one entity per synthetic row
    qpos = planted.query_positives(queries)
    assert qpos.shape == (len(queries), len(planted.examples))
    for q, row in zip(queries, qpos, strict=True):
        assert np.array_equal(row, planted.positives(q.metadata["swap"]))
    with pytest.raises(InputError, match="names no swap"):
        planted.query_positives([Example("q", "p", "r")])


def test_per_type_positives_hand_checked():
    rows = [
        Example("a", "p", "Rain in England."),  # England->China only
        Example("b", "p", "Rain in Wales."),  # Wales->Scotland only
        Example("c", "p", "England and Wales drew."),  # both swaps: a positive of each
        Example("d", "p", "Rain in Spain."),  # no source entity: never a positive
        Example("e", "p", "China won."),  # names a target but was not corrupted
    ]
    planted = plant_entity_swap(rows, swaps=[("England", "China"), ("Wales", "Scotland")], p=1.0)
    assert planted.swap_types == ("England->China", "Wales->Scotland")
    assert planted.injected == {"a", "b", "c"}
    assert planted.positives("England->China").tolist() == [True, False, True, False, False]
    assert planted.positives("Wales->Scotland").tolist() == [False, True, True, False, False]
    assert planted.positives().tolist() == [True, True, True, False, False]
    assert planted.n_positives() == {"England->China": 2, "Wales->Scotland": 2}
    shows = [
        Example("q1", "p", "r", {"swap": "Wales->Scotland"}),
        Example("q2", "p", "r", {"swap": "England->China"}),
    ]
    assert planted.query_positives(shows).astype(int).tolist() == [[0, 1, 1, 0, 0], [1, 0, 1, 0, 0]]


def test_entity_swap_on_given_corpus_and_cap():
    rows = [Example(str(i), "p", f"News from England and London, item {i}.") for i in range(40)]
    rows += [Example(f"x{i}", "p", "Nothing here.") for i in range(10)]
    planted = plant_entity_swap(rows, p=1.0, seed=0)
    assert planted.injected == {str(i) for i in range(40)}
    assert all(planted.examples[i].response == f"News from China and Belfast, item {i}." for i in range(40))
    capped = plant_entity_swap(rows, p=1.0, max_rate=0.02, seed=0)
    assert len(capped.injected) == 1


def test_swap_trace_score_hand_computed():
    planted = entity_swap_benchmark(n_synthetic=800, seed=2)
    a, b = SYNTHETIC_SWAPS[0].name, SYNTHETIC_SWAPS[1].name
    pa, pb = planted.positives(a).astype(float), planted.positives(b).astype(float)
    n_a, n_b, n = int(pa.sum()), int(pb.sum()), len(pa)
    # type a: its own rows first, b's next -> perfect; type b: a's rows above b's own
    type_scores = np.stack([2 * pa + pb, 2 * pa + pb], axis=1)
    # three queries: two show a (one perfect, one reversed), one shows b (scored like type b)
    query_scores = np.stack([pa, -pa, 2 * pa + pb], axis=1)
    got = swap_trace_score(type_scores, query_scores, [a, b], [a, a, b], planted, k=1000)
    ta, tb = got.per_type[a], got.per_type[b]
    assert ta.auc == 1.0 and ta.r_at_k == 1.0 and ta.k == n_a and ta.n_positive == n_a
    auc_b = (n - n_b - n_a) / (n - n_b)  # b's rows beat every negative but a's injected rows
    assert tb.auc == pytest.approx(auc_b) and tb.k == n_b
    assert tb.r_at_k == pytest.approx(max(0, n_b - n_a) / n_b)
    assert got.auc == pytest.approx((1.0 + auc_b) / 2) and got.r_at_k == pytest.approx((1.0 + tb.r_at_k) / 2)
    assert ta.query_auc == pytest.approx(0.5) and ta.query_r_at_k == pytest.approx(0.5)  # 1 and 0
    assert got.query_auc == pytest.approx((1.0 + 0.0 + auc_b) / 3) and got.n_queries == 3
    assert swap_trace_score(type_scores, query_scores, [a, b], [a, a, b], planted, k=2).per_type[a].k == 2


# ----------------------------------------------------------------------------- PII
def test_pii_benchmark_plants_exactly_what_it_claims():
    bench = make_pii_benchmark(30, seed=1)
    assert len({p["name"] for p in bench.people}) == 30
    n_qa = 30 * len(PII_ATTRIBUTES)
    assert len(bench.train_qa) == round(0.6 * n_qa) and len(bench.heldout) == n_qa - round(0.6 * n_qa)
    assert not {q.id for q in bench.train_qa} & {q.id for q in bench.heldout}
    bios = {b.id: b for b in bench.biographies}
    assert len(bios) == 30 * 4 == len({b.response for b in bench.biographies})  # 4 distinct bios each
    for q in bench.heldout:
        assert len(bench.target[q.id]) == 4
        for bio in (bios[b] for b in bench.target[q.id]):
            assert q.response in bio.response  # the answer is in each of that person's biographies ...
            assert bio.metadata["person"] in q.prompt
            # every sentence names the person in full (the augmentation that makes facts extractable)
            assert bio.response.count(bio.metadata["person"]) == len(PII_ATTRIBUTES)
        others = [b for b in bench.biographies if b.id not in bench.target[q.id] and q.response in b.response]
        assert not others  # ... and in no other biography
        assert airrep_text(q.prompt, q.response).startswith("Question: What's the ")
    assert {b.id for b in bench.biographies} <= {e.id for e in bench.train}
    assert make_pii_benchmark(30, seed=1).target == bench.target
    assert len(make_pii_benchmark(5, bios_per_person=1, seed=1).biographies) == 5


def test_answered_correctly_is_what_greedy_decoding_produces(tiny_lm_dir):
    from airsearch.lm import load_lm
    from airsearch.lm.finetune import FinetuneConfig, finetune
    from airsearch.lm.model import tokenize_example

    # 128 tokens hold every prompt and answer whole (RoPE: no position limit), so training, the
    # teacher-forced check and generation all see the same prompt
    tiny_lm = load_lm(tiny_lm_dir, device="cpu", max_length=128)
    bench = make_pii_benchmark(4, seed=0)
    learnt = bench.train_qa[:6]
    ft = FinetuneConfig(epochs=80, lr=1e-2, batch_size=6, max_length=128, seed=0)
    lm = finetune(tiny_lm, learnt, ft, show_progress=False)
    questions = learnt + bench.heldout
    assert all(len(tokenize_example(lm.tokenizer, q, 10_000)[0]) <= 88 for q in questions)
    got = answered_correctly(lm, questions, batch_size=5, max_length=128)
    gens = greedy_generate(lm, questions, max_new_tokens=40)
    greedy = [g.strip().startswith(q.response) for q, g in zip(questions, gens, strict=True)]
    assert got.tolist() == greedy
    assert got[: len(learnt)].all() and not got[len(learnt) :].all()  # trained answers come back
    # seeded: the same fine-tune answers the same questions
    again = finetune(tiny_lm, learnt, ft, show_progress=False)
    assert answered_correctly(again, questions, max_length=128).tolist() == got.tolist()


def test_score_pii_traces_each_answer_to_its_biography(tmp_path):
    from airsearch.trainers.evaluation.methods import Method
    from airsearch.trainers.evaluation.trace_scoring import score_pii

    bench = make_pii_benchmark(12, seed=4)
    bm25 = Method.of("bm25", workdir=tmp_path / "bm25")
    bm25.prepare(bench.biographies)
    # the question names the person and the answer is in their biography only: BM25 finds it
    got = score_pii(bm25, bench.heldout, bench.biographies, bench.target)
    assert got.top1 == 1.0 and got.n_queries == len(bench.heldout)
    # the score is judged against the given targets: a person's own biography, any of them, is a hit
    one = {q: ids[:1] for q, ids in bench.target.items()}
    assert score_pii(bm25, bench.heldout, bench.biographies, one).top1 < 1.0
    shifted = dict(zip(bench.target, list(bench.target.values())[1:] + [[]], strict=True))
    same = np.mean([shifted[q] == bench.target[q] for q in bench.target])
    assert score_pii(bm25, bench.heldout, bench.biographies, shifted).top1 == pytest.approx(same)
