"""Corpus input: every format, row shape, id rule and bad input; the bundled sample corpus."""

from __future__ import annotations

import collections
import csv
import gzip
import io
import json
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import airsearch
from airsearch.data import sample_corpus_path, sample_queries_path
from airsearch.data.corpus import (
    Corpus,
    SkippedRow,
    fingerprint_examples,
    iter_corpus,
    load_corpus,
    load_queries,
    write_rows,
)
from airsearch.data.natural_instructions import compact_definition, read_ni_tasks, task_rows
from airsearch.errors import InputError

REPO = Path(__file__).resolve().parent.parent
ROWS = [
    {"id": "a", "prompt": "What is 2+2?", "response": "4", "task": "math", "lang": "en"},
    {"id": "b", "prompt": "Capital of France?", "response": "Paris", "task": "geo", "lang": "en"},
    {"id": "c", "prompt": "Translate 'cat'", "response": "chat", "task": "mt", "lang": "fr"},
]


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for i, text in (raw_lines or {}).items():
        lines.insert(i, text)
    path.write_text("\n".join(lines) + "\n")
    return path


def put(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)
    return path


def as_tuples(corpus: Corpus) -> list[tuple]:
    return [(e.id, e.prompt, e.response, e.metadata) for e in corpus]


# ---------------------------------------------------------------- formats


def _make_source(kind: str, tmp: Path) -> Path:
    import datasets

    if kind == "jsonl":
        return write_jsonl(tmp / "c.jsonl", ROWS)
    if kind == "jsonl.gz":
        p = tmp / "c.jsonl.gz"
        p.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
        return p
    if kind == "json-list":
        (p := tmp / "c.json").write_text(json.dumps(ROWS))
        return p
    if kind == "json-data":
        (p := tmp / "c.json").write_text(json.dumps({"version": 1, "data": ROWS}))
        return p
    if kind == "json-lines-in-.json":
        return write_jsonl(tmp / "c.json", ROWS)
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), p := tmp / "c.parquet")
        return p
    if kind == "csv":
        return write_csv(tmp / "c.csv", ROWS)
    if kind == "tsv":
        return write_csv(tmp / "c.tsv", ROWS, delimiter="\t")
    if kind == "hf-disk":
        datasets.Dataset.from_list(ROWS).save_to_disk(p := tmp / "ds")
        return p
    if kind == "hf-disk-dict":
        dd = datasets.DatasetDict(
            {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])}
        )
        dd.save_to_disk(p := tmp / "dsd")
        return p
    raise AssertionError(kind)


FORMATS = [
    "jsonl",
    "jsonl.gz",
    "json-list",
    "json-data",
    "json-lines-in-.json",
    "parquet",
    "csv",
    "tsv",
    "hf-disk",
    "hf-disk-dict",
]


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_reads_the_same_examples(kind, tmp_path):
    corpus = load_corpus(_make_source(kind, tmp_path))
    assert as_tuples(corpus) == [
        (r["id"], r["prompt"], r["response"], {"task": r["task"], "lang": r["lang"]}) for r in ROWS
    ]
    assert corpus.skipped == []
    assert corpus.by_id()["b"].response == "Paris"


def test_hf_disk_dict_split_choice(tmp_path):
    path = _make_source("hf-disk-dict", tmp_path)
    assert [e.id for e in load_corpus(path, hub_split="test")] == ["a"]
    with pytest.raises(InputError, match="split 'dev' not found"):
        load_corpus(path, hub_split="dev")


def test_several_sources_and_public_exports(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS[:2])
    b = write_jsonl(tmp_path / "b.jsonl", ROWS[2:])
    corpus = airsearch.load_corpus([a, b])
    assert [e.id for e in corpus] == ["a", "b", "c"] and len(corpus) == 3
    assert corpus.sources == [str(a), str(b)]
    for name in (
        "load_corpus",
        "iter_corpus",
        "load_queries",
        "Corpus",
        "write_rows",
        "sample_corpus_path",
        "sample_queries_path",
    ):
        assert getattr(airsearch, name) is not None


def test_iter_corpus_streams_lazily(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", ROWS, raw_lines={3: "{broken"})
    it = iter_corpus(path)
    assert [next(it).id for _ in range(3)] == ["a", "b", "c"]  # rows before the bad line come out
    with pytest.raises(InputError, match=r"c\.jsonl:4"):
        next(it)
    skipped: list[SkippedRow] = []
    assert len(list(iter_corpus(path, skip_bad_rows=True, skipped=skipped))) == 3
    assert [(s.line, s.field) for s in skipped] == [(4, None)]


def test_parquet_streams_in_batches(tmp_path, monkeypatch):
    from airsearch.data import readers

    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 2)
    rows = [{"prompt": f"p{i}", "response": f"r{i}", "n": i} for i in range(7)]
    pq.write_table(pa.Table.from_pylist(rows), p := tmp_path / "c.parquet")
    assert [e.metadata["n"] for e in iter_corpus(p)] == list(range(7))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("row", "prompt", "response", "meta"),
    [
        ({"prompt": "P", "response": "R", "x": 1}, "P", "R", {"x": 1}),
        ({"instruction": "Do it", "input": "data", "output": "done"}, "Do it\n\ndata", "done", {}),
        ({"instruction": "Do it", "input": "", "output": "done"}, "Do it", "done", {}),
        ({"instruction": "Do it", "output": "done", "src": "alpaca"}, "Do it", "done", {"src": "alpaca"}),
        ({"inputs": "Q?", "targets": "A.", "template": "t1"}, "Q?", "A.", {"template": "t1"}),
        ({"text": "Once upon a time.", "source": "web"}, "", "Once upon a time.", {"source": "web"}),
        (
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
            "Hi",
            "Hello!",
            {},
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Yo"},
                    {"role": "user", "content": "Why?"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Because."}]},
                ]
            },
            "system: Be brief.\nuser: Hi\nassistant: Yo\nuser: Why?",
            "Because.",
            {},
        ),
    ],
    ids=[
        "prompt-response",
        "instruction-input",
        "instruction-empty-input",
        "instruction-only",
        "inputs-targets",
        "text",
        "messages-single",
        "messages-multi",
    ],
)
def test_row_shapes(row, prompt, response, meta, tmp_path):
    (ex,) = load_corpus(write_jsonl(tmp_path / "c.jsonl", [row])).examples
    assert (ex.prompt, ex.response, ex.metadata) == (prompt, response, meta)


def test_field_mapping_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "Q1", "answer": "A1", "text": "t", "k": 2}])
    (ex,) = load_corpus(path, prompt_field="question", response_field="answer").examples
    assert (ex.prompt, ex.response, ex.metadata) == ("Q1", "A1", {"text": "t", "k": 2})
    (ex,) = load_corpus(path, response_field="answer").examples  # no prompt column: empty prompt
    assert (ex.prompt, ex.response) == ("", "A1")
    (ex,) = load_corpus(path, prompt_field="", response_field="question").examples
    assert (ex.prompt, ex.response, set(ex.metadata)) == ("", "Q1", {"answer", "text", "k"})
    with pytest.raises(InputError, match=r"c\.jsonl:1: field 'response'"):
        load_corpus(path, prompt_field="question")  # response column defaults to 'response'


def test_metadata_kept_jsonable_and_reserved_names_renamed(tmp_path):
    row = {
        "instruction": "I",
        "output": "O",
        "response": "old",
        "tags": ["a", "b"],
        "info": {"src": "x", "score": 0.5},
        "n": None,
    }
    (ex,) = load_corpus(write_jsonl(tmp_path / "c.jsonl", [row])).examples
    assert ex.metadata == {
        "orig_response": "old",
        "tags": ["a", "b"],
        "info": {"src": "x", "score": 0.5},
        "n": None,
    }
    assert ex.to_row()["response"] == "O"
    json.dumps(ex.metadata)


def test_parquet_typed_metadata_is_jsonable(tmp_path):
    import datetime

    table = pa.table(
        {
            "prompt": ["p"],
            "response": ["r"],
            "when": [datetime.date(2024, 1, 2)],
            "blob": [b"xy"],
            "vec": [[1.0, 2.0]],
            "ok": [True],
        }
    )
    pq.write_table(table, p := tmp_path / "c.parquet")
    (ex,) = load_corpus(p).examples
    assert ex.metadata == {"when": "2024-01-02", "blob": "xy", "vec": [1.0, 2.0], "ok": True}


# ---------------------------------------------------------------- ids and fingerprint


def test_explicit_ids_and_integer_ids(tmp_path):
    rows = [{"id": 7, "prompt": "p", "response": "r"}, {"uid": "u1", "prompt": "q", "response": "s"}]
    corpus = load_corpus(write_jsonl(tmp_path / "c.jsonl", rows))
    assert corpus.examples[0].id == "7" and len(corpus.examples[1].id) == 12  # second row: content id
    corpus = load_corpus(write_jsonl(tmp_path / "d.jsonl", rows[1:]), id_field="uid")
    assert corpus.examples[0].id == "u1" and corpus.examples[0].metadata == {}


def test_derived_ids_are_stable_across_reload_reorder_and_path(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}", "task": "t"} for i in range(20)]
    rows.append(dict(rows[3]))  # an exact duplicate
    first = load_corpus(write_jsonl(tmp_path / "a.jsonl", rows))
    again = load_corpus(tmp_path / "a.jsonl")
    assert [e.id for e in first] == [e.id for e in again]
    assert len(set(first.by_id())) == 21
    assert first.examples[20].id == first.examples[3].id + "-1"
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    moved = load_corpus(write_jsonl(tmp_path / "sub_b.jsonl", shuffled))
    key = lambda c: {(e.prompt, e.response, e.id.split("-")[0]) for e in c}  # noqa: E731
    assert key(moved) == key(first)
    assert moved.fingerprint == first.fingerprint  # content-based: independent of order and path


def test_fingerprint_tracks_content(tmp_path):
    base = load_corpus(write_jsonl(tmp_path / "a.jsonl", ROWS))
    changed = [dict(r) for r in ROWS]
    changed[1]["lang"] = "de"
    assert load_corpus(write_jsonl(tmp_path / "b.jsonl", changed)).fingerprint != base.fingerprint
    assert fingerprint_examples(base.examples[:2]) != base.fingerprint
    assert len(base.fingerprint) == 16


# ---------------------------------------------------------------- bad inputs

BAD_JSONL = [
    ("{not json", 2, None, "invalid JSON"),
    ("[1, 2]", 2, None, "not a JSON object"),
    ('{"prompt": "p"}', 2, "response", "missing required field"),
    ('{"prompt": "p", "response": "  "}', 2, "response", "required field is empty"),
    ('{"prompt": 5, "response": "r"}', 2, "prompt", "must be a string, got int"),
    ('{"response": "r"}', 2, "prompt", "missing required field"),
    ('{"question": "q", "answer": "a"}', 2, None, "unknown row shape"),
    ('{"id": "a", "prompt": "p", "response": "r"}', 2, "id", "duplicate id 'a'"),
    ('{"id": ["x"], "prompt": "p", "response": "r"}', 2, "id", "id must be a string"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', 2, "messages", "final turn must be the assistant"),
    ('{"messages": "hi"}', 2, "messages", "non-empty list"),
    ('{"instruction": "i", "input": 3, "output": "o"}', 2, "input", "must be a string"),
]


@pytest.mark.parametrize(
    ("line", "lineno", "field", "reason"), BAD_JSONL, ids=[b[3].split("(")[0] for b in BAD_JSONL]
)
def test_bad_rows_are_refused_with_file_line_field(line, lineno, field, reason, tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ROWS, raw_lines={1: line})
    with pytest.raises(InputError) as err:
        load_corpus(path)
    assert (err.value.path, err.value.line, err.value.row, err.value.field) == (
        str(path),
        lineno,
        None,
        field,
    )
    where = f"{path}:{lineno}: " + (f"field '{field}': " if field else "")
    assert str(err.value).startswith(where)
    assert reason in err.value.message and "--skip-bad-rows" in err.value.message
    corpus = load_corpus(path, skip_bad_rows=True)
    assert len(corpus) == 3 and len(corpus.skipped) == 1
    skip = corpus.skipped[0]
    assert (skip.source, skip.line, skip.field) == (str(path), lineno, field) and reason in skip.reason


def test_skip_bad_rows_counts_and_summary(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        ROWS + [{"prompt": "p"}] * 2,
        raw_lines={0: "oops", 2: '{"prompt": "x", "response": ""}'},
    )
    corpus = load_corpus(path, skip_bad_rows=True)
    assert len(corpus) == 3
    assert [s.line for s in corpus.skipped] == [1, 3, 6, 7]
    assert corpus.skip_summary() == {
        "response: missing required field": 2,
        "invalid JSON (Expecting value at column 1)": 1,
        "response: required field is empty": 1,
    }


def test_bad_rows_in_csv_json_parquet_name_line_or_row(tmp_path):
    (p := tmp_path / "c.csv").write_text('prompt,response\n"multi\nline",r1\np2,\np3,r3,extra\n')
    with pytest.raises(InputError) as err:
        load_corpus(p)
    assert (err.value.path, err.value.line, err.value.field) == (
        str(p),
        4,
        "response",
    )  # record starts on line 4
    assert str(err.value).startswith(f"{p}:4: field 'response': ")
    corpus = load_corpus(p, skip_bad_rows=True)
    assert [e.prompt for e in corpus] == ["multi\nline"]
    assert [(s.line, s.field) for s in corpus.skipped] == [(4, "response"), (5, None)]
    assert "3 fields but the header has 2" in corpus.skipped[1].reason

    (j := tmp_path / "c.json").write_text(json.dumps([ROWS[0], "str", {"prompt": "p", "response": 1}]))
    with pytest.raises(InputError) as err:
        load_corpus(j)
    assert (err.value.path, err.value.line, err.value.row, err.value.field) == (str(j), None, 2, None)
    assert str(err.value).startswith(f"{j}: row 2: ")
    assert [(s.line, s.field) for s in load_corpus(j, skip_bad_rows=True).skipped] == [
        (2, None),
        (3, "response"),
    ]
    pq.write_table(
        pa.Table.from_pylist([ROWS[0], {**ROWS[1], "response": None}]), q := tmp_path / "c.parquet"
    )
    with pytest.raises(InputError) as err:
        load_corpus(q)
    assert (err.value.path, err.value.row, err.value.field) == (
        str(q),
        2,
        "response",
    ) and "null" in err.value.message
    assert str(err.value).startswith(f"{q}: row 2: field 'response': ")


def test_duplicate_ids_across_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    b = write_jsonl(tmp_path / "b.jsonl", ROWS[:1])
    with pytest.raises(InputError, match=r"b\.jsonl:1: field 'id': duplicate id 'a'"):
        load_corpus([a, b])


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: d / "missing.jsonl", "missing.jsonl: file not found"),
        (lambda d: put(d / "c.txt", "x"), "unknown corpus format '.txt'"),
        (lambda d: put(d / "e.jsonl", "\n\n"), "empty corpus: no rows"),
        (lambda d: put(d / "e.csv", ""), "empty CSV file"),
        (lambda d: put(d / "e.json", '{"a": 1}'), "list of rows"),
        (lambda d: put(d / "e.json", '[{"a": '), "invalid JSON"),
        (lambda d: put(d / "bad.parquet", "no"), "cannot read Parquet"),
        (lambda d: (d / "folder").mkdir() or d / "folder", "save_to_disk folder"),
        (lambda d: write_jsonl(d / "all_bad.jsonl", [{"prompt": "p"}]), "missing required field"),
    ],
    ids=[
        "missing",
        "suffix",
        "empty-jsonl",
        "empty-csv",
        "json-no-list",
        "json-invalid",
        "parquet-bad",
        "plain-folder",
        "all-bad",
    ],
)
def test_bad_sources_give_clear_errors(setup, match, tmp_path):
    with pytest.raises(InputError, match=match):
        load_corpus(setup(tmp_path))


def test_all_rows_skipped_is_an_empty_corpus(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "p"}, {"x": 1}])
    with pytest.raises(InputError, match="empty corpus: all 2 rows were bad and skipped"):
        load_corpus(path, skip_bad_rows=True)


def test_hub_name_offline_is_a_clear_input_error():
    with pytest.raises(InputError, match="HF hub dataset") as err:
        load_corpus("no-such-org/no-such-dataset")
    assert err.value.path == "no-such-org/no-such-dataset"


# ---------------------------------------------------------------- queries and export


def test_load_queries_response_optional(tmp_path):
    rows = [
        {"id": "q1", "prompt": "Where?"},
        {"id": "q2", "prompt": "Why?", "response": "Because."},
        {"messages": [{"role": "user", "content": "Hi"}]},
    ]
    queries = load_queries(write_jsonl(tmp_path / "q.jsonl", rows))
    assert [(q.prompt, q.response) for q in queries] == [("Where?", ""), ("Why?", "Because."), ("Hi", "")]
    with pytest.raises(InputError, match="field 'prompt'"):
        load_queries(write_jsonl(tmp_path / "r.jsonl", [{"prompt": ""}]))
    # one loader: a corpus needs responses, and load_queries is load_corpus with them optional
    with pytest.raises(InputError, match="q.jsonl:1"):
        load_corpus(tmp_path / "q.jsonl")
    same = load_corpus(tmp_path / "q.jsonl", require_response=False, skip_bad_rows=False)
    assert same.examples == queries.examples and same.fingerprint == queries.fingerprint
    picky = load_queries(tmp_path / "q.jsonl", id_field=None, skip_bad_rows=True)
    assert [q.prompt for q in picky] == ["Where?", "Why?", "Hi"] and picky.examples[0].id != "q1"


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_write_rows_round_trip(suffix, tmp_path):
    corpus = load_corpus(write_jsonl(tmp_path / "c.jsonl", ROWS))
    rows = [{**e.to_row(), "score": 0.5 * i, "rank": i} for i, e in enumerate(corpus)]
    out = write_rows(tmp_path / f"sel{suffix}", rows)
    back = load_corpus(out)
    assert as_tuples(back) == [
        (e.id, e.prompt, e.response, {**e.metadata, "score": 0.5 * i, "rank": i})
        for i, e in enumerate(corpus)
    ]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    write_rows(tmp_path / "ex.jsonl", corpus.examples)  # Examples work too
    assert load_corpus(tmp_path / "ex.jsonl").fingerprint == corpus.fingerprint


def test_write_rows_refuses_unknown_suffix_and_keeps_old_file(tmp_path):
    with pytest.raises(InputError, match=".jsonl or .parquet"):
        write_rows(tmp_path / "x.csv", ROWS)
    target = write_rows(tmp_path / "x.jsonl", ROWS)

    def broken():
        yield ROWS[0]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_rows(target, broken())
    assert len(load_corpus(target)) == 3


# ---------------------------------------------------------------- sample corpus and NI builders


def test_sample_corpus_loads():
    train, queries = load_corpus(sample_corpus_path()), load_queries(sample_queries_path())
    tasks = collections.Counter(e.metadata["task"] for e in train)
    assert len(train) == 3000 and len(tasks) == 20 and set(tasks.values()) == {150}
    assert len(queries) == 200 and {e.metadata["task"] for e in queries} == set(tasks)
    assert not set(train.by_id()) & set(queries.by_id())
    assert not {e.prompt for e in train} & {e.prompt for e in queries}
    assert all(e.prompt and e.response and set(e.metadata) == {"task"} for e in train)
    assert sample_corpus_path().stat().st_size < 5_000_000


def _fake_bigbench(path: Path, n_tasks: int = 4, n_examples: int = 30) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for t in range(1, n_tasks + 1):
            name = f"subtask{t:03d}_fake_task_{t}"
            doc = {
                "name": name,
                "task_prefix": f"Definition: Do task {t}. Things to Avoid: nothing.",
                "examples": [{"input": f"t{t} input {i}", "target": [f"out {i}"]} for i in range(n_examples)]
                + [{"input": f"t{t} input 0", "target": ["dup"]}],
            }
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(
                f"bigbench-1.0.0/bigbench/benchmark_tasks/natural_instructions/{name}/task.json"
            )
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_ni_helpers(tmp_path):
    assert compact_definition("Definition: Say yes. Things to Avoid: no.") == "Say yes."
    long = compact_definition("Definition: " + "word " * 100, max_chars=50)
    assert len(long) <= 54 and long.endswith("...")
    tasks = read_ni_tasks(_fake_bigbench(tmp_path / "bb.tar.gz"))
    rows = task_rows(tasks["subtask002_fake_task_2"])
    assert len(rows) == 30 and rows[0] == {
        "id": "ni002-00000",
        "prompt": "Do task 2.\n\nt2 input 0",
        "response": "out 0",
        "task": "subtask002_fake_task_2",
    }
    with pytest.raises(InputError, match="not in the tarball"):
        read_ni_tasks(tmp_path / "bb.tar.gz", ["subtask999_nope"])


def test_build_ni_corpus_script(tmp_path):
    tarball = _fake_bigbench(tmp_path / "bb.tar.gz")
    out = tmp_path / "ni"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "build_ni_corpus.py"),
        str(tarball),
        "--tasks",
        "2",
        "--per-task",
        "10",
        "--queries-per-task",
        "3",
        "--holdout-tasks",
        "subtask004_fake_task_4",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    train, queries, holdout = (
        load_corpus(out / f) for f in ("train.jsonl", "queries.jsonl", "holdout.jsonl")
    )
    assert len(train) == 20 and len(queries) == 6
    assert {e.metadata["task"] for e in holdout} == {"subtask004_fake_task_4"}
    assert not {e.metadata["task"] for e in train} & {"subtask004_fake_task_4"}
    assert not set(train.by_id()) & set(queries.by_id())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 20, "queries": 6, "holdout": 30}
    subprocess.run(cmd, check=True, capture_output=True)  # deterministic rebuild
    assert load_corpus(out / "train.jsonl").fingerprint == train.fingerprint
