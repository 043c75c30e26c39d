"""Configs validate themselves, speak one vocabulary, and still read configs saved with old spellings."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest
import yaml
from airsearch.indexers.config import IndexConfig, QueryConfig, SelectConfig
from airsearch.trainers.attribute import AttributeConfig, attribute
from airsearch.trainers.evaluation.common import EvalConfig
from airsearch.trainers.evaluation.lds import EvalLdsConfig
from airsearch.trainers.labels import LabelConfig

from airsearch.config import RENAMED_FIELDS, CommandConfig, flattened_fields, required_fields
from airsearch.data.corpus import write_rows
from airsearch.errors import InputError
from airsearch.lm.finetune import FinetuneConfig
from airsearch.methods.daunce_run import DaunceConfig
from airsearch.methods.registry import MethodConfig
from tests.helpers.cli import run

CONFIG_MODULES = (
    "airsearch.lm.finetune",
    "airsearch.lm.tiny",
    "airsearch.methods.registry",
    "airsearch.methods.daunce_run",
    "airsearch.indexers.config",
    "airsearch.indexers.serve.config",
    "airsearch.trainers.attribute",
    "airsearch.trainers.labels.config",
    "airsearch.trainers.encoder_training.config",
    "airsearch.trainers.evaluation.classify",
    "airsearch.trainers.evaluation.lds",
    "airsearch.trainers.evaluation.select",
    "airsearch.trainers.evaluation.trace",
)


def _all_configs() -> list[type[CommandConfig]]:
    for m in CONFIG_MODULES:
        importlib.import_module(m)
    todo, seen = [CommandConfig], []
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("airsearch") and sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


# ----------------------------------------------------------------------------- one vocabulary
def test_one_name_per_idea_in_every_config():
    configs = _all_configs()
    assert len(configs) >= 15
    for cls in configs:
        names = {f.name for f in dataclasses.fields(cls)}
        old = names & set(RENAMED_FIELDS)
        assert not old, f"{cls.__name__} still uses the old field name(s) {old}"
        for f in dataclasses.fields(cls):
            assert f.default != "", f"{cls.__name__}.{f.name}: a required field has no empty-string default"
    # the corpus is a list of paths everywhere a corpus is read
    for cls in (IndexConfig, LabelConfig, AttributeConfig, EvalConfig):
        assert dataclasses.fields(cls)[[f.name for f in dataclasses.fields(cls)].index("corpus")].type in (
            "list[str]",
            list[str],
        )
    # the same ideas carry the same names
    assert {"lm", "base_lm", "checkpoints", "proj_dim", "lora_rank"} <= {
        f.name for f in dataclasses.fields(MethodConfig)
    }
    # a command holding a nested MethodConfig offers its fields as its own (flattened)
    assert {"lm", "base_lm", "checkpoints", "proj_dim", "beta", "daunce_kind"} <= set(
        flattened_fields(QueryConfig)["method_config"]
    )
    assert {"lm", "lora_rank", "teacher_checkpoints", "teacher_base_lm"} <= {
        f.name for f in dataclasses.fields(LabelConfig)
    }
    assert "lora_rank" in {f.name for f in dataclasses.fields(FinetuneConfig)}
    assert "lora_rank" in {f.name for f in dataclasses.fields(DaunceConfig)}
    assert {"lm", "proj_dim"} <= {f.name for f in dataclasses.fields(EvalConfig)}


def test_old_spellings_still_load_with_a_deprecation_warning(tmp_path):
    old = {"method": "dda", "model": "lm/", "base_model": "lm0/", "checkpoint": ["ck1"], "proj_seed": 3}
    with pytest.warns(DeprecationWarning) as caught:
        cfg = MethodConfig.from_dict(old)
    assert [str(w.message) for w in caught] == [
        f"field '{o}' is now called '{n}'; the old spelling is still read but will be removed"
        for o, n in (
            ("model", "lm"),
            ("base_model", "base_lm"),
            ("checkpoint", "checkpoints"),
            ("proj_seed", "seed"),
        )
    ]
    assert (cfg.lm, cfg.base_lm, cfg.checkpoints, cfg.seed) == ("lm/", "lm0/", ["ck1"], 3)

    with pytest.warns(DeprecationWarning, match="'sources' is now called 'corpus'"):
        idx = IndexConfig.from_dict({"sources": ["a.jsonl", "b.jsonl"], "db": "db/"})
    assert idx.corpus == ["a.jsonl", "b.jsonl"]
    with pytest.warns(DeprecationWarning, match="'lora_r' is now called 'lora_rank'"):
        assert FinetuneConfig.from_dict({"lora_r": 4}).lora_rank == 4
    with pytest.warns(DeprecationWarning, match="'lora_r'"):
        assert DaunceConfig.from_dict({"lora_r": 2}).lora_rank == 2
    with pytest.warns(DeprecationWarning, match="'projection_dim' is now called 'proj_dim'"):
        assert EvalConfig.from_dict({"projection_dim": 64}).proj_dim == 64

    # a saved file (the config written beside an artefact before the rename) loads through load()
    path = tmp_path / "labels.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "corpus": ["train.jsonl"],
                "model": "lm/",
                "out": "labels/",
                "lora": 8,
                "teacher": "dda",
                "teacher_checkpoint": ["ck1"],
                "teacher_base_model": "lm0/",
            }
        )
    )
    with pytest.warns(DeprecationWarning) as caught:
        labels = LabelConfig.load(path)
    assert {str(w.message).split("'")[1] for w in caught} == {
        "model",
        "lora",
        "teacher_checkpoint",
        "teacher_base_model",
    }
    assert (labels.lm, labels.lora_rank, labels.teacher_checkpoints, labels.teacher_base_lm) == (
        "lm/",
        8,
        ["ck1"],
        "lm0/",
    )
    # attribute's corpus was one file (a string): it reads as a one-element list
    with pytest.warns(DeprecationWarning, match="'model'"):
        att = AttributeConfig.from_dict(
            {"model": "lm/", "corpus": "c.jsonl", "queries": "q.jsonl", "out": "o"}
        )
    assert att.corpus == ["c.jsonl"] and att.queries == ["q.jsonl"] and att.lm == "lm/"


def test_old_and_new_spelling_together_are_refused():
    with pytest.raises(InputError, match="both 'model' .* and 'lm'"):
        MethodConfig.from_dict({"model": "a", "lm": "b"})
    with pytest.raises(InputError, match="unknown field"):
        QueryConfig.from_dict({"db": "x", "prompt": "p", "response": "r", "projection": 3})


# ----------------------------------------------------------------------------- validation
def test_configs_validate_themselves_when_built_replaced_or_read():
    ok = QueryConfig(db="db", prompt="p", response="r")
    for build in (
        lambda: QueryConfig(db="db", prompt="p", response="r", k=0),
        lambda: ok.replace(k=0),
        lambda: QueryConfig.from_dict({"db": "db", "prompt": "p", "response": "r", "k": 0}),
    ):
        with pytest.raises(InputError) as e:
            build()
        assert e.value.field == "k" and "positive" in e.value.message
    with pytest.raises(InputError) as e:
        ok.replace(rerank="gradcos")  # a reranker needs the target LM
    assert e.value.field == "lm"
    with pytest.raises(InputError) as e:
        ok.replace(rerank="daunce")
    assert e.value.field == "daunce_run"
    with pytest.raises(InputError) as e:
        ok.replace(rerank="gradcos", lm="lm/", candidates=0)
    assert e.value.field == "candidates"
    assert ok.replace(rerank="gradcos", lm="lm/").rerank_method() == MethodConfig(method="gradcos", lm="lm/")
    with pytest.raises(InputError) as e:
        SelectConfig(db="db", targets="t.jsonl", out="sel.csv", n=3)
    assert e.value.field == "out"
    with pytest.raises(InputError) as e:
        MethodConfig(proj_dim=-1)
    assert e.value.field == "proj_dim"
    with pytest.raises(InputError) as e:
        LabelConfig(lm="lm/", out="o", subset_size=5, pool_size=4)
    assert e.value.field == "subset_size"


def test_required_fields_have_no_default_and_are_named_when_missing():
    assert required_fields(QueryConfig) == ["db"]
    assert required_fields(SelectConfig) == ["db", "targets", "out"]
    assert set(required_fields(AttributeConfig)) == {"corpus", "queries", "out"}
    assert set(required_fields(LabelConfig)) == {"lm", "out"}
    assert required_fields(EvalLdsConfig) == ["gold"]
    with pytest.raises(InputError) as e:
        SelectConfig.from_dict({"db": "db", "n": 3})
    assert e.value.field == "targets" and "also missing: out" in e.value.message
    with pytest.raises(InputError) as e:
        IndexConfig.from_dict({"corpus": [], "db": "db"})
    assert e.value.field == "corpus"
    res = run("query", "--prompt", "p", "--response", "r", ok=False)
    assert res.exit_code == 2 and "option '--db'" in res.output and "required" in res.output
    assert "Traceback" not in res.output


def test_cli_reads_an_old_config_file_with_a_warning(tmp_path, tiny_lm_dir, tiny_lm_examples):
    corpus = write_rows(tmp_path / "c.jsonl", [e.to_row() for e in tiny_lm_examples[:6]])
    queries = write_rows(tmp_path / "q.jsonl", [e.to_row() for e in tiny_lm_examples[40:42]])
    old = tmp_path / "attribute.yaml"  # as saved before the rename: model, corpus as one string
    old.write_text(
        yaml.safe_dump({"method": "gradcos", "model": str(tiny_lm_dir), "corpus": str(corpus), "k": 2})
    )
    res = run("attribute", "--config", old, "--queries", queries, "--out", tmp_path / "cli", "--json")
    assert "warning:" in res.stderr and "'model' is now called 'lm'" in res.stderr
    cli = json.loads(res.stdout)
    api = attribute(
        AttributeConfig(
            method="gradcos",
            lm=str(tiny_lm_dir),
            corpus=[str(corpus)],
            queries=[str(queries)],
            k=2,
            out=str(tmp_path / "api"),
        )
    )
    assert cli["results"] == api.to_dict()["results"] and cli["train"] == 6
    saved = AttributeConfig.load(tmp_path / "cli" / "config.yaml")  # what the run wrote: the new spelling
    assert saved.lm == str(tiny_lm_dir) and saved.corpus == [str(corpus)]
