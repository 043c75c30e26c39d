"""The method plug-in contract: one registry builds every method, and a method added in one file
(``tests/helpers/token_bag_method.py``) runs through every command with all its options:
``query --rerank``, ``method-column`` + ``query --method``, an evaluation spec and
:func:`~airsearch.methods.registry.load_method` (what ``attribute`` and the harness call)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from airsearch.data.example import Example
from airsearch.lm import load_lm
from airsearch.methods.names import METHOD_NAMES
from airsearch.methods.plugin import get_plugin, method_names, plugins, register_module, unregister
from airsearch.methods.registry import MethodConfig, load_method
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.token_bag_method import token_bag

QUERY = Example("q", "What colour is the lemon?", "The lemon is gold.")


@pytest.fixture
def token_bag_plugin():
    plugin, pairwise = register_module("tests.helpers.token_bag_method")
    yield plugin
    unregister(plugin.name)
    unregister(pairwise.name)


def _reference(lm_dir, rows, query, dim, prompt_weight):
    """Plain cosines of the hashed token bags, one pair at a time."""
    tok = load_lm(str(lm_dir), device="cpu").tokenizer
    q = np.array(token_bag(tok, query, dim, prompt_weight))
    out = []
    for row in rows:
        r = np.array(token_bag(tok, row, dim, prompt_weight))
        out.append(float(r @ q / (np.linalg.norm(r) * np.linalg.norm(q))))
    return np.array(out)


def test_every_builtin_method_is_one_plugin_of_the_one_registry():
    names = [p.name for p in plugins()]
    assert names == list(METHOD_NAMES) == list(method_names())
    for p in plugins():
        assert dataclasses.is_dataclass(p.options)
        assert set(p.spec_options) <= {f.name for f in dataclasses.fields(p.options)}
        if not p.needs_lm:  # a search baseline: its own options reach a command as --method-option
            continue
        assert p.score_kind == "dot"  # every attribution method is a dot product of its two vectors
        # MethodConfig is the union of the options: every option of every method reaches every command
        assert {f.name for f in dataclasses.fields(p.options)} <= {
            f.name for f in dataclasses.fields(MethodConfig)
        }
    assert {p.name for p in plugins() if p.gradient} == {"tracin", "gradcos", "dda", "haif", "haif-t"}
    assert {p.name for p in plugins() if p.checkpoints} == {"tracin", "gradcos", "dda"}
    # the evaluation's search baselines are plug-ins of the same registry (one list of names)
    baselines = {p.name: p.score_kind for p in plugins() if not p.needs_lm}
    assert baselines == {"airrep": "dot", "base": "dot", "bm25": "pairwise", "hybrid": "pairwise",
                         "random": "pairwise"}  # fmt: skip


def test_registry_builds_builtin_methods_with_their_options(tiny_lm_dir):
    m = load_method(
        MethodConfig(method="dda", lm=str(tiny_lm_dir), beta=0.0, proj_dim=16, seed=3), show_progress=False
    )
    assert (m.name, m.beta, m.ck.projector.dim, m.ck.projector.seed) == ("dda", 0.0, 16, 3)
    with pytest.raises(Exception, match="no option 'gamma'"):
        MethodConfig(method="dda", method_options=["gamma=1"]).plugin_options()


def test_a_method_added_in_one_file_reranks_with_its_options(token_bag_plugin, tiny_lm_db, tiny_lm_dir):
    assert "token-bag" in method_names() and get_plugin("token-bag") is token_bag_plugin
    n, k = 8, 5
    common = ("query", "--db", tiny_lm_db, "--prompt", QUERY.prompt, "--response", QUERY.response, "--json")
    (plain,) = json.loads(run(*common, "-k", n).stdout)
    candidates = [Example(c["id"], c["prompt"], c["response"]) for c in plain["proponents"]]
    out = run(
        *common, "-k", k, "--rerank", "token-bag", "--lm", tiny_lm_dir, "--candidates", n,
        "--method-option", "dim=16", "--method-option", "prompt_weight=0.5",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    assert res["reranked_by"] == "token-bag" and res["score_kind"] == "token-bag"
    ref = _reference(tiny_lm_dir, candidates, QUERY, 16, 0.5)
    order = np.argsort(-ref, kind="stable")[:k]
    assert [c["id"] for c in res["proponents"]] == [candidates[i].id for i in order]
    np.testing.assert_allclose([c["score"] for c in res["proponents"]], ref[order], rtol=1e-5, atol=1e-6)
    # the option changes the scores (it reached the method)
    (other,) = json.loads(
        run(*common, "-k", k, "--rerank", "token-bag", "--lm", tiny_lm_dir, "--candidates", n).stdout
    )
    ref0 = _reference(tiny_lm_dir, candidates, QUERY, 32, 0.0)
    got = {c["id"]: c["score"] for c in other["proponents"]}
    np.testing.assert_allclose(
        list(got.values()), [ref0[[e.id for e in candidates].index(i)] for i in got], rtol=1e-5, atol=1e-6
    )
    # an option the method does not have: one line, exit 2
    bad = run(*common, "--rerank", "token-bag", "--lm", tiny_lm_dir, "--method-option", "gamma=1", ok=False)
    assert_one_line_error(bad, "gamma", "--method-option", code=2)


def test_a_method_added_in_one_file_gets_a_column_that_search_reads(
    token_bag_plugin, tiny_lm_db, tiny_lm_dir, tiny_lm_examples, tmp_path
):
    db = tmp_path / "db"
    shutil.copytree(tiny_lm_db, db)
    opts = ("--method-option", "dim=24", "--method-option", "prompt_weight=0.25")
    made = json.loads(
        run("method-column", "--db", db, "--method", "token-bag", "--lm", tiny_lm_dir, *opts, "--json").stdout
    )
    assert made["column"]["column"] == "m_token_bag" and made["column"]["dim"] == 24
    out = run(
        "query", "--db", db, "--method", "token-bag", "--lm", tiny_lm_dir, "--prompt", QUERY.prompt,
        "--response", QUERY.response, "-k", 5, "--exact", "--json",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    rows = tiny_lm_examples[:20]
    ref = _reference(tiny_lm_dir, rows, QUERY, 24, 0.25)
    order = np.argsort(-ref, kind="stable")[:5]
    got = res["proponents"]
    ids = [e.id for e in rows]
    # each score is the plain reference of its row, and they are the exact top 5 (ties in any order)
    np.testing.assert_allclose([c["score"] for c in got], [ref[ids.index(c["id"])] for c in got], rtol=1e-5)
    np.testing.assert_allclose([c["score"] for c in got], ref[order], rtol=1e-5, atol=1e-6)


def test_a_method_added_in_one_file_runs_in_eval_specs(token_bag_plugin, tiny_lm_dir, tmp_path):
    from trainers.evaluation.specs import method_config, method_spec_options, run_label

    opts = method_spec_options("token-bag:dim=8,prompt_weight=2")
    assert opts == {"dim": 8, "prompt_weight": 2.0}

    class Eval:  # the EvalConfig options a spec reads
        lm, proj_dim, params, seed, daunce_run, daunce_models, daunce_lr = (
            str(tiny_lm_dir),
            0,
            "all",
            0,
            None,
            8,
            1e-3,
        )

    mcfg = method_config(Eval(), "token-bag:dim=8,prompt_weight=2")
    assert mcfg.method == "token-bag" and mcfg.extra_options() == {"dim": "8", "prompt_weight": "2.0"}
    assert run_label("token-bag:dim=8,prompt_weight=2", Eval(), mcfg) == "token-bag:dim=8,prompt_weight=2.0"
    method = load_method(mcfg, show_progress=False)
    rows = [Example("a", "p", "The lemon is gold."), Example("b", "p", "A river runs.")]
    np.testing.assert_allclose(
        method.score(rows, [QUERY])[:, 0].numpy(), _reference(tiny_lm_dir, rows, QUERY, 8, 2.0), rtol=1e-5
    )


def test_a_pairwise_method_reranks_and_evaluates_but_gets_no_column(
    token_bag_plugin, tiny_lm_db, tiny_lm_dir, tmp_path
):
    """The documented fallback (``score_kind="pairwise"``): the method scores rows itself."""
    from trainers.evaluation.methods import Method

    common = ("query", "--db", tiny_lm_db, "--prompt", QUERY.prompt, "--response", QUERY.response, "--json")
    (plain,) = json.loads(run(*common, "-k", 6).stdout)
    candidates = [Example(c["id"], c["prompt"], c["response"]) for c in plain["proponents"]]
    (res,) = json.loads(
        run(*common, "-k", 6, "--rerank", "token-bag-pairwise", "--lm", tiny_lm_dir, "--candidates", 6).stdout
    )
    ref = _reference(tiny_lm_dir, candidates, QUERY, 32, 0.0)
    by_id = {e.id: r for e, r in zip(candidates, ref, strict=True)}
    np.testing.assert_allclose([c["score"] for c in res["proponents"]], sorted(ref, reverse=True), rtol=1e-5)
    np.testing.assert_allclose(
        [c["score"] for c in res["proponents"]], [by_id[c["id"]] for c in res["proponents"]], rtol=1e-5
    )
    # the evaluation harness scores it block by block through its own score_against
    m = Method(MethodConfig(method="token-bag-pairwise", lm=str(tiny_lm_dir)))
    m.prepare(candidates)
    blocks = np.concatenate([b for _, b in m.score_blocks([QUERY], block_size=4)])
    np.testing.assert_allclose(blocks[:, 0], ref, rtol=1e-5)
    db = tmp_path / "db"
    shutil.copytree(tiny_lm_db, db)
    bad = run("method-column", "--db", db, "--method", "token-bag-pairwise", "--lm", tiny_lm_dir, ok=False)
    assert_one_line_error(bad, "dot product", code=2)
