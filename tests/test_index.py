"""The LanceDB store: build, append, delete, refusals, atomic builds, readers during appends, ANN."""

from __future__ import annotations

import numpy as np
import pytest
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.query import Searcher
from airsearch.indexers.store import BUILDING_PREFIX, IndexStore, info

from airsearch.data.corpus import load_corpus
from airsearch.encoder import AirRepEncoder
from airsearch.errors import FingerprintMismatch, InputError
from tests.helpers.corpora import make_rows, write_corpus


def _cfg(db, corpus, enc, **kw) -> IndexConfig:
    return IndexConfig(corpus=[str(s) for s in corpus], db=str(db), encoder=str(enc), **kw)


def test_build_records_provenance_and_roundtrips_rows(tmp_path, corpus_file, tiny_encoder_dir):
    s = build_index(_cfg(tmp_path / "db", [corpus_file], tiny_encoder_dir, chunk_size=16))
    assert (s.rows_added, s.rows_total, s.dim, s.skipped) == (60, 60, 32, 0)
    corpus = load_corpus(corpus_file)
    assert s.corpus_fingerprint == corpus.fingerprint
    table = IndexStore(tmp_path / "db").open()
    enc = AirRepEncoder.load(tiny_encoder_dir)
    assert table.meta.encoder_fingerprint == enc.fingerprint
    assert table.meta.corpora[0]["fingerprint"] == corpus.fingerprint
    assert table.meta.template == enc.info.template
    assert table.meta.columns == {"task": "str", "n": "int", "tags": "json"}
    # rows come back exactly as loaded (metadata types included) with the encoder's vectors
    row_ids = [rid for ids, _, _ in table.iter_blocks(7) for rid in ids]
    assert [e for e in table.take(row_ids)] == corpus.examples
    np.testing.assert_allclose(table.take_vectors(row_ids), enc.encode(corpus.examples), rtol=1e-5, atol=1e-6)
    d = info(tmp_path / "db")
    assert d.tables[0].rows == 60 and d.tables[0].index.type == "exact" and not d.tables[0].index.ann
    assert d.to_dict()["tables"][0]["index"] == {"type": "exact", "ann": False}  # unset parts are left out


def test_append_delete_and_requery(tmp_path, tiny_encoder_dir):
    a = write_corpus(tmp_path / "a.jsonl", make_rows(30))
    b = write_corpus(tmp_path / "b.jsonl", make_rows(10, start=30))
    db = tmp_path / "db"
    build_index(_cfg(db, [a], tiny_encoder_dir))
    s = build_index(_cfg(db, [b], tiny_encoder_dir, append=True))
    assert (s.mode, s.rows_added, s.rows_total) == ("append", 10, 40)
    searcher = Searcher(str(db), encoder=str(tiny_encoder_dir))
    assert len(searcher.table.meta.corpora) == 2
    target = load_corpus(b).examples[3]
    everything = load_corpus(a).examples + load_corpus(b).examples
    enc = AirRepEncoder.load(tiny_encoder_dir)
    brute = enc.encode(everything) @ enc.encode([target])[0]
    top = searcher.search(target, k=40)[0].proponents
    assert [c.id for c in top] == [everything[i].id for i in np.argsort(-brute, kind="stable")]
    np.testing.assert_allclose([c.score for c in top], np.sort(brute)[::-1], rtol=1e-4, atol=1e-5)
    store = IndexStore(db)
    assert store.delete(ids=[target.id]) == 1
    again = Searcher(str(db), encoder=str(tiny_encoder_dir)).search(target, k=40)[0].proponents
    assert target.id not in {c.id for c in again} and len(again) == 39
    assert store.delete(where="task = 'alpha'") == 13
    left = Searcher(str(db), encoder=str(tiny_encoder_dir)).search(target, k=40)[0].proponents
    assert len(left) == 26 and all(c.metadata["task"] != "alpha" for c in left)
    with pytest.raises(InputError):
        store.delete(where="no_such_column = 1")


def test_encoder_fingerprint_refusals(tmp_path, corpus_file, tiny_encoder_dir, other_encoder_dir):
    db = tmp_path / "db"
    build_index(_cfg(db, [corpus_file], tiny_encoder_dir))
    with pytest.raises(FingerprintMismatch, match="encoder fingerprint mismatch"):
        build_index(_cfg(db, [corpus_file], other_encoder_dir, append=True))
    with pytest.raises(FingerprintMismatch, match="encoder fingerprint mismatch"):
        Searcher(str(db), encoder=str(other_encoder_dir))
    assert IndexStore(db).open().count() == 60
    with pytest.raises(InputError, match="already exists"):
        build_index(_cfg(db, [corpus_file], tiny_encoder_dir))


def test_overwrite_swaps_in_the_new_table_whole(tmp_path, corpus_file, tiny_encoder_dir):
    db = tmp_path / "db"
    build_index(_cfg(db, [corpus_file], tiny_encoder_dir))
    small = write_corpus(tmp_path / "small.jsonl", make_rows(5, start=200))
    s = build_index(_cfg(db, [small], tiny_encoder_dir, overwrite=True))
    assert (s.mode, s.rows_total) == ("overwrite", 5)
    store = IndexStore(db)
    table = store.open()
    row_ids = [rid for ids, _, _ in table.iter_blocks() for rid in ids]
    assert table.take(row_ids) == load_corpus(small).examples
    assert store.table_names() == ["corpus"]
    assert [p.name for p in db.iterdir() if p.name.startswith((".", BUILDING_PREFIX))] == []


def test_index_made_with_the_old_input_rule_is_refused(tmp_path, corpus_file, tiny_encoder_dir):
    """Issue 10.1: an index encoded with the old right-cutting rule names the rule and asks to re-index."""
    from airsearch.encoder import LEGACY_INPUT_RULE

    old = AirRepEncoder.load(tiny_encoder_dir)
    old.info.input_rule = LEGACY_INPUT_RULE  # what the previous version wrote (same weights)
    old.invalidate_fingerprint()
    db = tmp_path / "db"
    build_index(_cfg(db, [corpus_file], tiny_encoder_dir), encoder=old)
    with pytest.raises(FingerprintMismatch, match="old input rule 'cut-right-v1'.*Re-index"):
        Searcher(str(db), encoder=str(tiny_encoder_dir))


def test_failed_build_leaves_no_table_and_failed_append_adds_nothing(tmp_path, tiny_encoder_dir):
    good = make_rows(40)
    bad = tmp_path / "bad.jsonl"
    lines = [__import__("json").dumps(r) for r in good] + ['{"id": "x", "prompt": 3}']
    bad.write_text("\n".join(lines) + "\n")
    db = tmp_path / "db"
    with pytest.raises(InputError, match="bad.jsonl:41"):
        build_index(_cfg(db, [bad], tiny_encoder_dir, chunk_size=8))  # 5 chunks were written first
    assert not db.exists()  # no table, no staging table: not even the folder the failed build made
    db.mkdir()
    with pytest.raises(InputError, match="bad.jsonl:41"):
        build_index(_cfg(db, [bad], tiny_encoder_dir, chunk_size=8))
    store = IndexStore(db)
    assert store.table_names() == []
    assert not [p for p in db.iterdir() if p.name.startswith(BUILDING_PREFIX)]
    build_index(_cfg(db, [write_corpus(tmp_path / "ok.jsonl", make_rows(5, start=100))], tiny_encoder_dir))
    version = store.open().version
    with pytest.raises(InputError, match="bad.jsonl:41"):
        build_index(_cfg(db, [bad], tiny_encoder_dir, chunk_size=8, append=True))
    t = store.open()
    assert t.count() == 5 and t.version == version


def test_skip_bad_rows_reports(tmp_path, tiny_encoder_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "response": "b"}\nnot json\n{"prompt": "c"}\n{"prompt": "d", "response": "e"}\n'
    )
    s = build_index(_cfg(tmp_path / "db", [bad], tiny_encoder_dir, skip_bad_rows=True))
    assert (s.rows_added, s.skipped) == (2, 2) and sum(s.skipped_reasons.values()) == 2


def test_reader_keeps_working_during_append(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    build_index(_cfg(db, [write_corpus(tmp_path / "a.jsonl", make_rows(20))], tiny_encoder_dir))
    reader = Searcher(str(db), encoder=str(tiny_encoder_dir))
    q = make_rows(1, start=500)[0]
    from airsearch.data.example import Example

    query = Example("q", q["prompt"], q["response"])
    before = reader.search(query, k=50)[0].proponents
    build_index(
        _cfg(
            db,
            [write_corpus(tmp_path / "b.jsonl", make_rows(15, start=20))],
            tiny_encoder_dir,
            append=True,
            chunk_size=4,
        )
    )
    during = reader.search(query, k=50)[0].proponents  # the reader's version: still 20 rows
    assert [c.id for c in during] == [c.id for c in before] and len(during) == 20
    fresh = Searcher(str(db), encoder=str(tiny_encoder_dir)).search(query, k=50)[0].proponents
    assert len(fresh) == 35


def test_ann_index_built_above_threshold_and_refreshed_on_append(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    rows = make_rows(300)
    s = build_index(
        _cfg(
            db,
            [write_corpus(tmp_path / "a.jsonl", rows)],
            tiny_encoder_dir,
            ann_threshold=200,
            ann_type="IVF_HNSW_SQ",
            refine_factor=10,
            nprobes=50,
        )
    )
    assert s.index.ann and s.index.type != "exact"
    ann = Searcher(str(db), encoder=str(tiny_encoder_dir))
    exact = Searcher(str(db), encoder=str(tiny_encoder_dir), exact=True)
    assert ann.use_ann and not exact.use_ann
    queries = load_corpus(tmp_path / "a.jsonl").examples[:10]
    hits = 0
    for ra, re in zip(ann.search(queries, k=10), exact.search(queries, k=10), strict=True):
        hits += len({c.id for c in ra.proponents} & {c.id for c in re.proponents})
        assert [c.score for c in ra.proponents] == sorted((c.score for c in ra.proponents), reverse=True)
    assert hits / 100 >= 0.9
    # opponents through the ANN index (search for -q) and a prefiltered --where, for a query vector
    # opposite to a beta row (the untrained encoder scores every row positive for a text query)
    beta = next(r["id"] for r in rows if r["task"] == "beta")
    away = -exact.table.take_vectors([exact.table.find([beta])[beta]]).astype(np.float32)
    ((sa, ia),) = ann.opponents(away, 5, where="task = 'beta'")
    ((se, ie),) = exact.opponents(away, 5, where="task = 'beta'")
    assert len(ie) == 5 and (se < 0).all() and (sa < 0).all()
    assert all(ex.metadata["task"] == "beta" for ex in ann.table.take(ia))
    assert len(set(ia.tolist()) & set(ie.tolist())) >= 4
    with pytest.raises(InputError, match="field 'where': bad filter") as err:
        ann.search(queries[0], k=5, where="nosuch = 1")
    assert err.value.field == "where" and "--" not in str(err.value)  # the library names fields, not flags
    # a large k with the refine step asks HNSW for k * refine candidates: ef is raised to match
    wide = ann.search(queries[0], k=60)[0].proponents
    assert len(wide) == 60 and [c.id for c in wide[:10]] == [
        c.id for c in ann.search(queries[0], k=10)[0].proponents
    ]
    s2 = build_index(
        _cfg(
            db,
            [write_corpus(tmp_path / "b.jsonl", make_rows(20, start=300))],
            tiny_encoder_dir,
            append=True,
            ann_threshold=200,
        )
    )
    assert s2.rows_total == 320 and s2.index.ann
    new = load_corpus(tmp_path / "b.jsonl").examples
    found = Searcher(str(db), encoder=str(tiny_encoder_dir), exact=True).search(new[0], k=320)[0].proponents
    assert {e.id for e in new} <= {c.id for c in found}


def test_auto_ann_type_follows_table_size():
    """``auto`` is IVF_HNSW_SQ below 500k rows and IVF_FLAT (sqrt(rows) partitions, 3 in 16
    probed, no refine) from there, as benchmarks/results/ann_sweep.md found; set fields win."""
    from airsearch.indexers.ann import LARGE_TABLE_ROWS, AnnConfig

    auto = AnnConfig()
    assert auto.index_type == "auto"
    small, large = 100_000, 1_000_000
    assert auto.resolved_type(small) == "IVF_HNSW_SQ" and auto.partitions(small) == 4
    assert auto.search_params(small) == {"nprobes": 8, "refine_factor": 20, "ef": 300}
    assert auto.resolved_type(LARGE_TABLE_ROWS - 1) == "IVF_HNSW_SQ"
    assert auto.resolved_type(LARGE_TABLE_ROWS) == "IVF_FLAT"
    assert auto.partitions(large) == 1000
    assert auto.search_params(large) == {"nprobes": 188, "refine_factor": 0, "ef": None}
    hnsw = AnnConfig(index_type="IVF_HNSW_SQ", refine_factor=5)
    assert hnsw.resolved_type(large) == "IVF_HNSW_SQ" and hnsw.partitions(large) == 8
    assert hnsw.search_params(large) == {"nprobes": 8, "refine_factor": 5, "ef": 1000}
    assert AnnConfig(index_type="IVF_PQ").search_params(large)["refine_factor"] == 100
    with pytest.raises(InputError, match="unknown index type"):
        AnnConfig(index_type="HNSW")


def test_ivf_flat_index_records_its_search_settings(tmp_path, tiny_encoder_dir):
    db = tmp_path / "db"
    corpus = write_corpus(tmp_path / "a.jsonl", make_rows(300))
    s = build_index(_cfg(db, [corpus], tiny_encoder_dir, ann_threshold=200, ann_type="IVF_FLAT"))
    assert s.index.ann and s.index.search == {"nprobes": 4, "refine_factor": 0, "ef": None}  # 17 partitions
    recorded = IndexStore(str(db)).open("corpus").meta.ann
    assert recorded["type"] == "IVF_FLAT" and recorded["requested_type"] == "IVF_FLAT"
    assert recorded["num_partitions"] == 17 and recorded["rows_indexed"] == 300
    queries = load_corpus(corpus).examples[:10]
    exact = Searcher(str(db), encoder=str(tiny_encoder_dir), exact=True).search(queries, k=10)
    assert all(
        len(r.proponents) == 10
        for r in Searcher(str(db), encoder=str(tiny_encoder_dir)).search(queries, k=10)
    )
    # probing every partition of a flat IVF index is exact search
    build_index(
        _cfg(
            db, [corpus], tiny_encoder_dir, ann_threshold=200, ann_type="IVF_FLAT", nprobes=17, overwrite=True
        )
    )
    ann = Searcher(str(db), encoder=str(tiny_encoder_dir))
    assert ann.use_ann
    for ra, re in zip(ann.search(queries, k=10), exact, strict=True):
        assert [c.id for c in ra.proponents] == [c.id for c in re.proponents]
    # the default type below 500k rows is recorded as chosen by auto
    s2 = build_index(_cfg(tmp_path / "db2", [tmp_path / "a.jsonl"], tiny_encoder_dir, ann_threshold=200))
    rec2 = IndexStore(str(tmp_path / "db2")).open("corpus").meta.ann
    assert s2.index.ann and rec2["type"] == "IVF_HNSW_SQ" and rec2["requested_type"] == "auto"
    assert s2.index.search == {"nprobes": 8, "refine_factor": 20, "ef": 300}
