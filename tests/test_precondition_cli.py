"""``--precondition`` on every command that runs a gradient method (``attribute``, ``query --rerank``,
``labels generate --teacher``) and ``attribute --per-token``: each CLI path scores as the Python API
with the same K-FAC / EK-FAC settings (and differs from ``none``); token shares against a plain
per-token autograd reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from airsearch.trainers.labels import LabelStore

from airsearch.data.corpus import write_rows
from airsearch.data.example import Example
from airsearch.lm import encode_examples, load_lm
from airsearch.methods.gradients import ParamSet
from airsearch.methods.precondition import Precondition, fitting_sample
from airsearch.methods.tracin import TracIn
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.grads import loop_grads, loop_token_grads

LINEAR = ParamSet("linear")
QUERY = ("What colour is the lemon?", "The lemon is gold.")


def _api_scores(lm, train, test, kind, *, normalize=False, damping=None, sample=None, max_length=None):
    pre = Precondition(kind, damping=damping, sample=sample if sample is not None else train)
    method = TracIn(
        [lm], normalize=normalize, params=LINEAR, precondition=pre, max_length=max_length, show_progress=False
    )
    return method.score(train, test).double()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_lm_examples):
    root = tmp_path_factory.mktemp("precond")
    train, queries = tiny_lm_examples[:12], tiny_lm_examples[40:43]
    return (
        write_rows(root / "train.jsonl", train),
        write_rows(root / "queries.jsonl", queries),
        train,
        queries,
    )


def _attribute(tmp_path, tiny_lm_dir, files, name, *extra):
    corpus, queries, _, _ = files
    out = tmp_path / name
    args = ("attribute", "--lm", tiny_lm_dir, "--corpus", corpus, "--queries", queries, "--out", out,
            "--params", "linear", "--max-length", 64, "--full-matrix", *extra, "--json")  # fmt: skip
    from safetensors.torch import load_file

    result = json.loads(run(*args).stdout)
    return result, load_file(str(out / "scores.safetensors"))["scores"].double()


@pytest.mark.parametrize(
    ("method", "kind", "damping"), [("tracin", "kfac", None), ("gradcos", "ekfac", 0.01)]
)
def test_attribute_cli_preconditions_as_the_api(tmp_path, tiny_lm_dir, files, method, kind, damping):
    _, _, train, queries = files
    extra = ("--method", method, "--precondition", kind, "--factors", tmp_path / "factors")
    extra += ("--damping", damping) if damping is not None else ()
    _, got = _attribute(tmp_path, tiny_lm_dir, files, "pre", *extra)
    _, plain = _attribute(tmp_path, tiny_lm_dir, files, "plain", "--method", method)
    lm = load_lm(str(tiny_lm_dir), device="cpu", max_length=64)
    ref = _api_scores(lm, train, queries, kind, normalize=method == "gradcos", damping=damping, max_length=64)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-7)
    assert (got - plain).abs().max() > 1e-2 * plain.abs().max()  # preconditioning changed the scores
    (folder,) = (tmp_path / "factors").glob(f"{kind}-*")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sample"]["n"] == len(train) and manifest["kind"] == kind


def _rerank(tiny_lm_db, tiny_lm_dir, *extra):
    out = run(
        "query", "--db", tiny_lm_db, "--prompt", QUERY[0], "--response", QUERY[1], "-k", 6, "--candidates", 6,
        "--rerank", "tracin", "--lm", tiny_lm_dir, "--params", "linear", *extra, "--json",
    )  # fmt: skip
    (res,) = json.loads(out.stdout)
    return {c["id"]: c["score"] for c in res["proponents"]}


def test_query_rerank_preconditions_as_the_api(tmp_path, tiny_lm_db, tiny_lm_dir, tiny_lm_examples):
    """Factors fitted on a seeded sample of the table's rows (the same rows ``fitting_sample`` picks)."""
    rows, query = tiny_lm_examples[:20], Example("query", *QUERY)
    lm = load_lm(str(tiny_lm_dir), device="cpu")
    factors = tmp_path / "factors"
    got = _rerank(
        tiny_lm_db, tiny_lm_dir, "--precondition", "ekfac", "--factors-samples", 8, "--factors", factors
    )
    plain = _rerank(tiny_lm_db, tiny_lm_dir)
    assert set(got) == set(plain) and len(got) == 6
    cand = [e for e in rows if e.id in got]
    sample = fitting_sample(rows, 8, seed=0)
    ref = _api_scores(lm, cand, [query], "ekfac", sample=sample)[:, 0].numpy()
    np.testing.assert_allclose([got[e.id] for e in cand], ref, rtol=1e-4, atol=1e-7)
    assert not np.allclose([got[e.id] for e in cand], [plain[e.id] for e in cand], rtol=1e-2)
    (folder,) = factors.glob("ekfac-*")
    assert json.loads((folder / "manifest.json").read_text())["sample"]["n"] == 8
    # the stored factors are reused (same scores), and refused for another fitting sample
    assert (
        _rerank(
            tiny_lm_db, tiny_lm_dir, "--precondition", "ekfac", "--factors-samples", 8, "--factors", factors
        )
        == got
    )
    other = run(
        "query", "--db", tiny_lm_db, "--prompt", QUERY[0], "--response", QUERY[1], "--rerank", "tracin",
        "--lm", tiny_lm_dir, "--params", "linear", "--precondition", "ekfac", "--factors", factors,
        "--factors-samples", 5, ok=False,
    )  # fmt: skip
    assert other.exit_code != 0 and "sample" in other.output and "Traceback" not in other.output


def test_query_precondition_needs_a_gradient_reranker(tiny_lm_db):
    res = run(
        "query", "--db", tiny_lm_db, "--prompt", "p", "--response", "r", "--precondition", "kfac", ok=False
    )
    assert_one_line_error(res, "option '--precondition'", "gradient --rerank")


def test_explain_and_serve_precondition_the_token_view(tiny_lm_db, tiny_lm_dir, tiny_lm_examples):
    """``explain`` and the served explain endpoint: the preconditioned token shares sum to the API score."""
    from airsearch.indexers.serve import ServeConfig, create_app
    from fastapi.testclient import TestClient

    rows, query = tiny_lm_examples[:20], Example("query", *QUERY)
    lm = load_lm(str(tiny_lm_dir), device="cpu")
    want = _api_scores(lm, [rows[3]], [query], "ekfac", sample=fitting_sample(rows, 8, seed=0))[0, 0].item()
    out = run(
        "explain", "--db", tiny_lm_db, "--id", rows[3].id, "--prompt", QUERY[0], "--response", QUERY[1],
        "--lm", tiny_lm_dir, "--method", "tracin", "--params", "linear", "--precondition", "ekfac",
        "--factors-samples", 8, "--json",
    )  # fmt: skip
    grad = json.loads(out.stdout)["gradient"]
    assert grad["score"] == pytest.approx(want, rel=1e-4)
    assert sum(t["contribution"] for t in grad["tokens"]) == pytest.approx(want, rel=1e-4)
    cfg = ServeConfig(
        db=str(tiny_lm_db), lm=str(tiny_lm_dir), rerank_methods=("tracin",), params="linear",
        precondition="ekfac", factors_samples=8,
    )  # fmt: skip
    with TestClient(create_app(cfg)) as c:
        assert c.get("/api/info").json()["precondition"] == "ekfac"
        body = {"id": rows[3].id, "prompt": QUERY[0], "response": QUERY[1], "method": "tracin"}
        served = c.post("/api/explain", json=body).json()["gradient"]
    assert served["score"] == pytest.approx(want, rel=1e-4)
    bad = run("explain", "--db", tiny_lm_db, "--id", rows[3].id, "--response", "r", "--precondition", "kfac",
              ok=False)  # fmt: skip
    assert_one_line_error(bad, "option '--precondition'", "--lm")


SIZES = ("--splits", 1, "--dev-size", 3, "--pool-size", 8, "--subset-size", 3,
         "--subsets-per-split", 3, "--max-length", 32)  # fmt: skip


def test_teacher_labels_precondition_as_the_api(tmp_path, tiny_lm_dir, tiny_lm_examples):
    corpus = write_rows(tmp_path / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:24]])

    def generate(out, *extra):
        args = ("labels", "generate", corpus, "--lm", tiny_lm_dir, "--out", out, *SIZES,
                "--teacher", "tracin", "--teacher-params", "linear", *extra, "--json")  # fmt: skip
        assert json.loads(run(*args).stdout)["done_jobs"] == 3
        return LabelStore.open(out)

    store = generate(tmp_path / "kfac", "--precondition", "kfac")
    plain = generate(tmp_path / "plain")
    assert store.config["precondition"] == "kfac" and store.config["teacher_params"] == "linear"
    assert len(list((tmp_path / "kfac" / "factors").glob("kfac-*/factors.safetensors"))) == 1

    (split,) = store.splits()
    by_id = store.examples()
    dev = [by_id[i] for i in split.dev_ids]
    pool = [by_id[i] for i in store.pool_ids(split.split)]
    lm = load_lm(str(tiny_lm_dir), device="cpu", max_length=32)
    for k, members in enumerate(split.members):
        ref = _api_scores(lm, [by_id[i] for i in members], dev, "kfac", sample=pool, max_length=32)
        np.testing.assert_allclose(split.losses[k], -ref.sum(0).numpy(), rtol=1e-4, atol=1e-6)
    assert not np.allclose(split.losses, plain.splits()[0].losses, rtol=1e-2)


def test_teacher_precondition_refused_for_retraining(tmp_path, tiny_lm_dir, tiny_lm_examples):
    corpus = write_rows(tmp_path / "corpus.jsonl", [e.to_row() for e in tiny_lm_examples[:24]])
    bad = run("labels", "generate", corpus, "--lm", tiny_lm_dir, "--out", tmp_path / "x", *SIZES,
              "--precondition", "ekfac", ok=False)  # fmt: skip
    assert_one_line_error(bad, "option '--precondition'", "gradient teachers")


def test_attribute_per_token_equals_per_token_gradient_dot_products(tmp_path, tiny_lm_dir, files):
    """Each token's share is ``grad l_t(train) / n_tokens . grad L(query)``, one autograd call per token."""
    _, _, train, queries = files
    result, scores = _attribute(
        tmp_path, tiny_lm_dir, files, "tok", "--method", "tracin", "--params", "all", "--per-token", "--k", 3
    )
    lm = load_lm(str(tiny_lm_dir), device="cpu", max_length=64)
    names = [n for n, _ in lm.model.named_parameters()]
    query_grads = loop_grads(lm.model, names, encode_examples(lm, queries, 64)).double()
    by_id = {e.id: e for e in train}
    seen = 0
    for j, q in enumerate(result["results"]):
        assert len(q["top"]) == 3
        for top in q["top"]:
            ex = by_id[top["id"]]
            tok = loop_token_grads(lm.model, names, encode_examples(lm, [ex], 64), 0).double()
            ref = tok @ query_grads[j] / tok.shape[0]
            got = [t["contribution"] for t in top["tokens"]]
            np.testing.assert_allclose(got, ref.numpy(), rtol=1e-4, atol=1e-8)
            np.testing.assert_allclose(sum(got), top["score"], rtol=1e-4, atol=1e-7)
            assert (
                "".join(t["token"] for t in top["tokens"]).replace(" ", "")
                == ex.response.replace(" ", "") + "</s>"
            )
            assert [t["token_id"] for t in top["tokens"]] == [
                int(x) for x in encode_examples(lm, [ex], 64)["labels"][0] if x != -100
            ]
            seen += 1
    assert seen == 3 * len(queries)
    saved = json.loads((tmp_path / "tok" / "results.json").read_text())
    assert saved["results"][0]["top"][0]["tokens"] == result["results"][0]["top"][0]["tokens"]

    corpus, qfile, _, _ = files
    human = run("attribute", "--lm", tiny_lm_dir, "--corpus", corpus, "--queries", qfile,
                "--out", tmp_path / "h", "--method", "tracin", "--params", "all", "--max-length", 64,
                "--per-token", "--top-tokens", 2, "--k", 2).stdout  # fmt: skip
    first = result["results"][0]["top"][0]
    best = sorted(first["tokens"], key=lambda t: -abs(t["contribution"]))[:2]
    line = next(x for x in human.splitlines() if x.strip().startswith(f"{first['id']} tokens:"))
    assert all(repr(t["token"]) in line for t in best)


def test_per_token_refused_for_methods_without_gradients(tmp_path, tiny_lm_dir, files):
    corpus, queries, _, _ = files
    bad = run("attribute", "--lm", tiny_lm_dir, "--corpus", corpus, "--queries", queries,
              "--out", tmp_path / "o", "--method", "repsim", "--per-token", ok=False)  # fmt: skip
    assert_one_line_error(bad, "option '--per-token'", "gradient methods")
