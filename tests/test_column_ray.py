"""A method column computed on a local Ray cluster (``method-column --ray``) equals the single-process
column: the same vectors in table order, the same spec fingerprint."""

from __future__ import annotations

import shutil

import lance
import numpy as np
import pytest
import ray
from airsearch.indexers.column_config import MethodColumnConfig
from airsearch.indexers.method_columns import add_method_column


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():  # another module's session: use it as it is
        yield
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _column(db, name):
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
    ids, vectors = _column(tmp_path / "ray", "m_gradcos")
    ids_alone, vectors_alone = _column(tmp_path / "alone", "m_gradcos")
    assert ids == ids_alone
    np.testing.assert_allclose(vectors, vectors_alone, rtol=1e-5, atol=1e-6)
