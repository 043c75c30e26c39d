"""Typed results and structured errors: what every command's function returns, where an error says it
happened, and that the CLI names a config field by its flag while the library names the field."""

from __future__ import annotations

import dataclasses
import json
import pickle
import typing

import numpy as np
import pytest
import torch
from airsearch.cli.main import app
from click.testing import CliRunner

from airsearch.data.corpus import write_rows
from airsearch.errors import AirsearchError, FingerprintMismatch, InputError, MissingDependency
from airsearch.results import Result, omitted_when_none


def cli(*args: object) -> typing.Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# ----------------------------------------------------------------------------- errors


def test_error_location_is_structured_and_rendered_one_way():
    e = InputError("must be a string", path="train.jsonl", line=12, row="x", field="response")
    assert (e.message, e.path, e.line, e.row, e.field) == (
        "must be a string",
        "train.jsonl",
        12,
        "x",
        "response",
    )
    assert str(e) == "train.jsonl:12: row 'x': field 'response': must be a string"
    assert str(InputError("must be >= 0", field="proj_dim")) == "field 'proj_dim': must be >= 0"
    assert str(InputError("bad row", path="c.parquet", row=2)) == "c.parquet: row 2: bad row"
    assert str(InputError("no location")) == "no location"
    assert (
        e.render(lambda f: f"option '--{f}'")
        == "train.jsonl:12: row 'x': option '--response': must be a string"
    )


@pytest.mark.parametrize(
    "err",
    [
        InputError("bad", path="a.jsonl", line=3, field="id"),
        FingerprintMismatch("other corpus", path="store/manifest.json"),
        MissingDependency("ray", "distributed", "running jobs on Ray"),
    ],
    ids=["input", "fingerprint", "missing-dependency"],
)
def test_errors_keep_their_location_across_processes(err):
    back = pickle.loads(pickle.dumps(err))  # a runner worker's failure is pickled to the driver
    assert type(back) is type(err) and str(back) == str(err)
    assert (back.message, back.path, back.line, back.row, back.field) == (
        err.message,
        err.path,
        err.line,
        err.row,
        err.field,
    )


def _bad_inputs(tmp_path):
    from airsearch.indexers.search import resolve_backend
    from airsearch.trainers.encoder_training.loss import pairwise_rank_loss
    from airsearch.trainers.evaluation.metrics import roc_auc
    from airsearch.trainers.evaluation.pii import make_pii_benchmark
    from airsearch.trainers.runner import Job, run_jobs

    from airsearch.labels import SplitLabels
    from airsearch.lm.loss import masked_token_nll
    from airsearch.methods.daunce import loss_profile_features
    from airsearch.methods.gradients import ParamSet
    from airsearch.methods.registry import MethodConfig
    from airsearch.metrics import lds_per_example

    cases = {
        "nll-reduction": (
            lambda: masked_token_nll(torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long), "avg"),
            None,
        ),
        "lds-shapes": (lambda: lds_per_example(np.zeros((2, 3)), np.zeros((3, 2))), None),
        "split-labels-shape": (lambda: SplitLabels(0, ["d"], [0], [["a"]], np.zeros((2, 1))), None),
        "rank-loss-shapes": (lambda: pairwise_rank_loss(torch.zeros(2, 3), torch.zeros(3, 2)), None),
        "auc-shapes": (lambda: roc_auc(np.zeros(2), np.zeros(3, dtype=bool)), None),
        "job-ids": (lambda: run_jobs([Job("a", {}), Job("a", {})], print, tmp_path / "jobs"), None),
        "pii-people": (lambda: make_pii_benchmark(10**6), "n_people"),
        "daunce-kind": (lambda: loss_profile_features(np.zeros((3, 2)), kind="nope"), "daunce_kind"),  # type: ignore[arg-type]
        "param-set": (lambda: ParamSet.parse("some"), "params"),
        "backend": (lambda: resolve_backend("nope"), "backend"),
        "config-value": (lambda: MethodConfig.from_dict({"proj_dim": -1}), "proj_dim"),
        "config-type": (lambda: MethodConfig.from_dict({"proj_dim": "many"}), "proj_dim"),
    }
    assert set(cases) == set(BAD_INPUTS)
    return cases


BAD_INPUTS = (
    "nll-reduction",
    "lds-shapes",
    "split-labels-shape",
    "rank-loss-shapes",
    "auc-shapes",
    "job-ids",
    "pii-people",
    "daunce-kind",
    "param-set",
    "backend",
    "config-value",
    "config-type",
)


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_library_bad_input_raises_an_airsearch_error_naming_the_field(case, tmp_path):
    call, field = _bad_inputs(tmp_path)[case]
    with pytest.raises(AirsearchError) as err:
        call()
    assert err.value.field == field
    if field:
        assert f"field '{field}'" in str(err.value)
    assert "--" not in str(err.value)  # the library names fields, never CLI flags


def test_config_file_errors_name_the_file_and_the_field(tmp_path):
    from airsearch.indexers.config import QueryConfig

    bad = tmp_path / "q.yaml"
    bad.write_text("db: somewhere\nprompt: p\nresponse: r\nk: many\n")
    with pytest.raises(InputError) as err:
        QueryConfig.load(bad)
    assert (err.value.path, err.value.field) == (str(bad), "k")
    assert str(err.value).startswith(f"{bad}: field 'k': expected int")


# ----------------------------------------------------------------------------- the CLI prints flags


def test_cli_prints_the_flag_of_a_field_error(tmp_path):
    db = tmp_path / "db"
    res = cli("query", "--db", db, "--prompt", "p", "--response", "r", "-k", 0)
    assert res.exit_code == 2 and "option '--k': must be positive" in res.output
    assert "field 'k'" not in res.output and "Traceback" not in res.output

    bad = tmp_path / "q.yaml"
    bad.write_text(f"db: {db}\nprompt: p\nresponse: r\nk: many\n")
    res = cli("query", "--config", bad)
    assert res.exit_code == 2 and f"{bad}: option '--k': expected int" in res.output


def test_cli_prints_a_custom_flag_and_a_positional_argument(tmp_path):
    from airsearch.trainers.evaluation.classify import EvalClassifyConfig, eval_classify

    rows = [{"id": f"r{i}", "prompt": f"p{i}", "response": f"r{i}", "task": "t"} for i in range(4)]
    corpus = write_rows(tmp_path / "c.jsonl", rows)
    # EvalConfig.methods has the custom flag --method
    res = cli("eval", "classify", "--corpus", corpus, "--queries", corpus, "--method", "nosuch")
    assert res.exit_code == 2 and "option '--method': unknown method 'nosuch'" in res.output
    with pytest.raises(InputError) as err:  # the same input through the Python API names the field
        eval_classify(EvalClassifyConfig(corpus=[str(corpus)], queries=[str(corpus)], methods=("nosuch",)))
    assert err.value.field == "methods" and "--method" not in str(err.value)
    # LabelConfig.corpus is the positional CORPUS argument of `labels generate`
    res = cli("labels", "generate", "--lm", tmp_path / "lm", "--out", tmp_path / "labels")
    assert res.exit_code == 2 and "argument 'CORPUS': no corpus given" in res.output


# ----------------------------------------------------------------------------- typed results


def _command_functions() -> dict[str, typing.Any]:
    from airsearch.indexers.build import build_index
    from airsearch.indexers.query import query
    from airsearch.indexers.select import select
    from airsearch.indexers.store import delete_rows, info
    from airsearch.trainers.attribute import attribute
    from airsearch.trainers.encoder_training import train_encoder
    from airsearch.trainers.evaluation.classify import eval_classify
    from airsearch.trainers.evaluation.lds import eval_lds
    from airsearch.trainers.evaluation.select import eval_select
    from airsearch.trainers.evaluation.trace import eval_trace
    from airsearch.trainers.labels import generate_labels, label_store_info

    from airsearch.lm.info import gguf_import_summary, lm_info, tiny_lm_summary

    return {
        f.__name__: f
        for f in (
            build_index,
            query,
            select,
            info,
            delete_rows,
            generate_labels,
            label_store_info,
            train_encoder,
            attribute,
            lm_info,
            tiny_lm_summary,
            gguf_import_summary,
            eval_lds,
            eval_classify,
            eval_trace,
            eval_select,
        )
    }


@pytest.mark.parametrize("name", sorted(_command_functions()))
def test_every_command_function_returns_a_frozen_result(name):
    fn = _command_functions()[name]
    # the return annotation alone: a parameter may name a type imported only for type checkers (the
    # torch-backed encoder of the torch-free query path)
    returns = fn.__annotations__["return"]
    if isinstance(returns, str):  # postponed annotations: resolved in the function's module
        returns = eval(returns, fn.__globals__)
    if typing.get_origin(returns) is list:  # query: one result per query
        (returns,) = typing.get_args(returns)
    assert issubclass(returns, Result) and dataclasses.is_dataclass(returns)
    assert returns.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_info_result_is_frozen_and_its_to_dict_is_the_json(tmp_path):
    from airsearch.indexers.store import IndexStore, info

    IndexStore(tmp_path / "db", create=True)
    got = info(tmp_path / "db")
    assert got.tables == [] and got.db == str(tmp_path / "db")
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.db = "elsewhere"  # type: ignore[misc]
    res = cli("info", "--db", tmp_path / "db", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == got.to_dict()
    assert "no tables" in cli("info", "--db", tmp_path / "db").stdout


def test_to_dict_converts_nested_results_and_leaves_out_unset_optional_fields():
    @dataclasses.dataclass(frozen=True)
    class Inner(Result):
        x: float
        note: str | None = omitted_when_none()

    @dataclasses.dataclass(frozen=True)
    class Outer(Result):
        inner: Inner
        by_name: dict[str, Inner]
        values: tuple[int, ...]
        array: np.ndarray

    out = Outer(Inner(1.5), {"a": Inner(2.0, note="n")}, (1, 2), np.arange(3))
    assert out.to_dict() == {
        "inner": {"x": 1.5},
        "by_name": {"a": {"x": 2.0, "note": "n"}},
        "values": [1, 2],
        "array": [0, 1, 2],
    }
    json.dumps(out.to_dict())  # plain JSON
