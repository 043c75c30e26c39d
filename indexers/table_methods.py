"""Attribution methods run on the rows of an index table: ``query --rerank``, ``explain`` and ``serve``.

A K-FAC / EK-FAC preconditioned method needs a fitting sample; here it is a seeded sample of the
table's own rows, picked as :func:`airsearch.methods.precondition.fitting_sample` picks from a list.
"""

from __future__ import annotations

from typing import Any

from airsearch.indexers.table import IndexTable

from airsearch.data.example import Example
from airsearch.methods.registry import MethodConfig


def table_sample(table: IndexTable, max_rows: int, seed: int = 0) -> list[Example]:
    """At most ``max_rows`` stored examples: the ones
    :func:`~airsearch.methods.precondition.fitting_sample` picks from the same rows (seeded, by id),
    the fitting sample of K-FAC / EK-FAC factors for a reranker on this table."""
    from airsearch.methods.precondition import sample_positions

    t = table.dataset.to_table(columns=["id"], with_row_id=True)
    ids, row_ids = t.column("id").to_pylist(), t.column("_rowid").to_pylist()
    by_id = sorted(range(len(ids)), key=ids.__getitem__)
    return table.take([row_ids[by_id[i]] for i in sample_positions(len(ids), max_rows, seed)])


def method_on_table(method_cfg: MethodConfig, table: IndexTable, *, show_progress: bool = True) -> Any:
    """The attribution method ``method_cfg`` for rescoring or explaining rows of ``table``.

    A K-FAC / EK-FAC preconditioned method fits its factors on ``method_cfg.factors_sample``, else on
    a seeded sample of the table's rows (:func:`table_sample`), or reads them from ``method_cfg.factors``.
    """
    from airsearch.methods.registry import load_method

    fit = None
    if method_cfg.precondition != "none" and not method_cfg.factors_sample:
        fit = table_sample(table, method_cfg.factors_samples, method_cfg.seed)
    return load_method(method_cfg, fit_sample=fit, show_progress=show_progress)
