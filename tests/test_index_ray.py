"""Distributed indexing on a local Ray cluster (``ray.init(num_cpus=2)``): the Ray path builds the same
table as the single-machine path, commits its fragments as one version, and a build stopped before
that commit leaves the table as it was; the next run cleans up after it. A method column computed on
Ray (``method-column --ray``) equals the single-process column."""

from __future__ import annotations

import shutil
from pathlib import Path

import lance
import numpy as np
import pytest
import ray
from airsearch.indexers.build import build_index
from airsearch.indexers.column_config import MethodColumnConfig
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.method_columns import add_method_column
from airsearch.indexers.staging import BUILDING_PREFIX, Staging
from airsearch.indexers.store import IndexStore

from airsearch.data.corpus import load_corpus
from tests.helpers.corpora import make_rows, write_corpus

CHUNK = 16


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():  # another module's session: use it as it is
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _table_rows(db: Path) -> tuple[list[str], np.ndarray]:
    data = IndexStore(db).open().dataset.to_table(columns=["id", "vector"])
    return data.column("id").to_pylist(), np.stack(data.column("vector").to_numpy(zero_copy_only=False))


def test_ray_build_equals_the_single_machine_build(local_ray, tmp_path, tiny_encoder_dir, corpus_file):
    common = {"corpus": [str(corpus_file)], "encoder": str(tiny_encoder_dir), "chunk_size": CHUNK}
    common["ann_threshold"] = 50  # both build the ANN index (60 rows)
    alone = build_index(IndexConfig(db=str(tmp_path / "alone"), **common))
    on_ray = build_index(IndexConfig(db=str(tmp_path / "ray"), ray="auto", workers=2, **common))
    assert on_ray.ray_workers == 2 and alone.ray_workers is None
    for field in ("rows_total", "dim", "encoder_fingerprint", "corpus_fingerprint", "index"):
        assert getattr(on_ray, field) == getattr(alone, field), field
    ids, vectors = _table_rows(tmp_path / "ray")
    ids_alone, vectors_alone = _table_rows(tmp_path / "alone")
    assert ids == ids_alone == [e.id for e in load_corpus(corpus_file).examples]  # corpus order
    np.testing.assert_allclose(vectors, vectors_alone, atol=1e-6)
    a, b = IndexStore(tmp_path / "alone").open(), IndexStore(tmp_path / "ray").open()
    assert (b.meta.columns, b.meta.corpora, b.meta.encoder) == (
        a.meta.columns,
        a.meta.corpora,
        a.meta.encoder,
    )
    assert b.has_ann() and b.has_fts() and b.meta.ann["type"] == a.meta.ann["type"]
    assert not list((tmp_path / "ray").glob(f"{BUILDING_PREFIX}*"))


def test_a_ray_build_stopped_before_its_commit_leaves_the_table_and_the_rerun_cleans_up(
    local_ray, tmp_path, tiny_encoder_dir, corpus_file, monkeypatch
):
    db = tmp_path / "db"
    build_index(IndexConfig(corpus=[str(corpus_file)], db=str(db), encoder=str(tiny_encoder_dir)))
    before = IndexStore(db).open()
    more = write_corpus(tmp_path / "more.jsonl", make_rows(40, start=1000))
    cfg = IndexConfig(
        corpus=[str(more)],
        db=str(db),
        encoder=str(tiny_encoder_dir),
        append=True,
        ray="auto",
        chunk_size=CHUNK,
    )
    commit = Staging.commit_fragments

    def stopped(self: Staging, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the fragments are written; the process dies before the one commit

    monkeypatch.setattr(Staging, "commit_fragments", stopped)
    with pytest.raises(KeyboardInterrupt):
        build_index(cfg)
    after = IndexStore(db).open()
    assert (after.version, after.count()) == (before.version, before.count())
    staging = list(db.glob(f"{BUILDING_PREFIX}*.lance"))
    assert len(staging) == 1 and list(staging[0].rglob("*.lance"))  # written, not committed
    assert not (staging[0] / "_versions").exists()

    monkeypatch.setattr(Staging, "commit_fragments", commit)
    summary = build_index(cfg)  # the same command again
    assert summary.rows_added == 40 and summary.rows_total == 100 and summary.resumed_rows == 0
    table = IndexStore(db).open()
    assert table.version > after.version and table.count() == 100
    assert sorted(table.ids().to_pylist()) == sorted(
        [e.id for e in load_corpus(corpus_file).examples] + [e.id for e in load_corpus(more).examples]
    )
    assert not list(db.glob(f"{BUILDING_PREFIX}*"))  # the stopped build's fragments are gone


def _method_column(db, name):
    t = lance.dataset(str(db / "corpus.lance")).to_table(columns=["id", name])
    return t["id"].to_pylist(), np.stack([np.asarray(v, np.float32) for v in t[name].to_pylist()])


def test_ray_column_build_equals_the_single_process_build(local_ray, tiny_lm_db, tiny_lm_dir, tmp_path):
    for name in ("alone", "ray"):
        shutil.copytree(tiny_lm_db, tmp_path / name)
    common = {"method": "gradcos", "lm": str(tiny_lm_dir), "proj_dim": 64, "chunk_size": 6}
    alone = add_method_column(MethodColumnConfig(db=str(tmp_path / "alone"), **common), show_progress=False)
    on_ray = add_method_column(
        MethodColumnConfig(db=str(tmp_path / "ray"), ray="auto", workers=2, **common), show_progress=False
    )
    assert (
        on_ray.column.fingerprint == alone.column.fingerprint and on_ray.rows_added == alone.rows_added == 20
    )
    ids, vectors = _method_column(tmp_path / "ray", "m_gradcos")
    ids_alone, vectors_alone = _method_column(tmp_path / "alone", "m_gradcos")
    assert ids == ids_alone
    np.testing.assert_allclose(vectors, vectors_alone, rtol=1e-5, atol=1e-6)
