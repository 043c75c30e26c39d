"""The published AirRep format (issue 26): tiny checkpoints in the released layout, built here from a
BERT config and state-dict names, load strictly, give the formula's vectors and Eq. 7 group scores,
export and load back unchanged; a folder without pooler weights keeps one fingerprint; the short
name offline is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertModel

from airsearch.data.example import Example
from airsearch.encoder import AirRepEncoder, default_encoder_path
from airsearch.encoder_export import ExportConfig, export_airrep
from airsearch.errors import InputError
from tests.helpers.cli import assert_one_line_error, run
from tests.helpers.corpora import TASKS, make_rows, write_corpus

ROWS = [
    Example("a", "What is the capital of France?", "Paris is the capital."),
    Example("b", "", "Every apple on the tree turned red."),
    Example("c", "Name three colours " * 5, "red, green and blue"),
]


def make_published(folder: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """A random AirRep in the released layout: BERT config with model_type "airrep", ``bert.*`` without
    a pooler, ``projector.*`` in bf16, the tokenizer files beside them."""
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(default_encoder_path())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    bert = BertModel(cfg, add_pooling_layer=False)
    weights = {"bert." + k: v.contiguous() for k, v in bert.state_dict().items()}
    weights["projector.weight"] = (0.3 * torch.randn(hidden, hidden)).to(torch.bfloat16)
    weights["projector.bias"] = (0.1 * torch.randn(hidden)).to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model.safetensors"))
    config = {**cfg.to_dict(), "model_type": "airrep", "architectures": ["AirRepModel"]}
    (folder / "config.json").write_text(json.dumps(config))
    tok.save_pretrained(str(folder))
    return folder


def reference_vectors(folder: Path, rows: list[Example]) -> np.ndarray:
    """The release's formula, written out: "Question: " + first 256 words + "\\nAnswer:" + " " + response,
    tokenised (512), BERT, masked mean of the last hidden state, then the linear projector (fp64)."""
    config = json.loads((folder / "config.json").read_text())
    cfg = BertConfig(**{k: v for k, v in config.items() if k not in ("model_type", "architectures")})
    weights = load_file(str(folder / "model.safetensors"))
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v.float() for k, v in weights.items() if k.startswith("bert.")})
    tok = AutoTokenizer.from_pretrained(str(folder), config=cfg)
    texts = ["Question: " + " ".join(r.prompt.split()[:256]) + "\nAnswer:" + " " + r.response for r in rows]
    feats = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        h = bert(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"]).last_hidden_state
    mask = feats["attention_mask"].unsqueeze(-1).double()
    pooled = (h.double() * mask).sum(1) / mask.sum(1)
    w, b = weights["projector.weight"].double(), weights["projector.bias"].double()
    return (pooled @ w.T + b).numpy()


def eq7(query: np.ndarray, members: np.ndarray) -> float:
    """AirRep Eq. 7 in numpy: softmax over |e_z . e_i|, then the weighted sum of e_z . e_i."""
    s = members.astype(np.float64) @ query.astype(np.float64)
    w = np.exp(np.abs(s) - np.abs(s).max())
    return float((w * s).sum() / w.sum())


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_published(tmp_path_factory.mktemp("published") / "airrep")


def test_vectors_equal_the_published_formula(published):
    enc = AirRepEncoder.load(published, device="cpu")
    assert enc.info.trained and enc.dim == 32 and enc.precision == "f32"
    assert all(p.dtype == torch.float32 for p in enc.model.parameters())  # the bf16 projector is upcast
    got, ref = enc.encode(ROWS), reference_vectors(published, ROWS)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_group_scores_of_an_index_equal_eq7(published, tmp_path):
    rows = make_rows(24)
    corpus = write_corpus(tmp_path / "c.jsonl", rows)
    db = tmp_path / "db"
    run("index", corpus, "--db", db, "--encoder", published)
    out = json.loads(
        run(
            "query",
            "--db",
            db,
            "--prompt",
            "red houses",
            "--response",
            "green",
            "--group-by",
            "task",
            "--json",
        ).stdout
    )
    examples = [Example(r["id"], r["prompt"], r["response"]) for r in rows]
    vecs, q = (
        reference_vectors(published, examples),
        reference_vectors(published, [Example("q", "red houses", "green")])[0],
    )
    groups = out["results"][0]["groups"] if "results" in out else out[0]["groups"]
    assert sorted(g["group"] for g in groups) == sorted(TASKS)
    for g in groups:
        members = vecs[[i for i, r in enumerate(rows) if r["task"] == g["group"]]]
        assert g["score"] == pytest.approx(eq7(q, members), rel=1e-4)


def test_export_then_load_gives_identical_vectors(tiny_encoder_dir, tmp_path):
    src = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    with torch.no_grad():  # a non-identity projection, as a trained encoder has
        torch.manual_seed(3)
        src.model.projector.weight.add_(0.2 * torch.randn_like(src.model.projector.weight))
        src.model.projector.bias.add_(0.1 * torch.randn_like(src.model.projector.bias))
    src.info.trained = True
    saved = src.save(tmp_path / "trained")
    out = tmp_path / "exported"
    summary = export_airrep(ExportConfig(encoder=str(saved), out=str(out)))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "airrep" and config["architectures"] == ["AirRepModel"]
    names = set(load_file(str(out / "model.safetensors")))
    assert {"projector.weight", "projector.bias"} <= names and all(
        n.startswith(("bert.", "projector.")) and ".pooler." not in n for n in names
    )
    assert summary.dropped == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    back = AirRepEncoder.load(out, device="cpu")
    assert back.info.trained and back.fingerprint == summary.fingerprint
    np.testing.assert_array_equal(back.encode(ROWS), AirRepEncoder.load(saved, device="cpu").encode(ROWS))
    np.testing.assert_allclose(back.encode(ROWS), reference_vectors(out, ROWS), rtol=1e-5, atol=1e-5)
    again = run("encoder", "export", "--encoder", saved, "--out", out, ok=False)
    assert_one_line_error(again, "not empty")


def _rewrite(folder: Path, change) -> None:
    weights = load_file(str(folder / "model.safetensors"))
    change(weights)
    save_file(weights, str(folder / "model.safetensors"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda w: w.pop("projector.bias"), "projector.bias"),
        (
            lambda w: w.pop("bert.encoder.layer.1.output.dense.weight"),
            "bert.encoder.layer.1.output.dense.weight",
        ),
        (lambda w: w.__setitem__("bert.extra.weight", torch.zeros(2)), "bert.extra.weight"),
        (lambda w: w.__setitem__("head.weight", torch.zeros(2)), "head.weight"),
    ],
)
def test_missing_or_extra_weight_is_refused_with_its_name(tmp_path, change, named):
    folder = make_published(tmp_path / "bad")
    _rewrite(folder, change)
    with pytest.raises(InputError, match=named.replace(".", r"\.")):
        AirRepEncoder.load(folder, device="cpu")
    corpus = write_corpus(tmp_path / "c.jsonl", make_rows(3))
    res = run("index", corpus, "--db", tmp_path / "db", "--encoder", folder, "--json", ok=False)
    assert_one_line_error(res, named, str(folder))
    assert not (tmp_path / "db").exists()


def test_folder_without_pooler_has_one_fingerprint_and_query_works(tiny_bert_dir, tmp_path):
    base = tmp_path / "nopooler"
    base.mkdir()
    for f in tiny_bert_dir.iterdir():
        (base / f.name).write_bytes(f.read_bytes())
    _rewrite(base, lambda w: [w.pop(k) for k in list(w) if k.startswith("pooler.")])
    a, b = AirRepEncoder.load(base, device="cpu"), AirRepEncoder.load(base, device="cpu")
    assert a.fingerprint == b.fingerprint
    assert not any("pooler" in n for n in a.model.state_dict())
    corpus = write_corpus(tmp_path / "c.jsonl", make_rows(6))
    run("index", corpus, "--db", tmp_path / "db", "--encoder", base)
    out = json.loads(
        run("query", "--db", tmp_path / "db", "--prompt", "p", "--response", "r", "-k", "2", "--json").stdout
    )
    assert out  # the index's own encoder reloads with the same fingerprint


def test_short_name_offline_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = write_corpus(tmp_path / "c.jsonl", make_rows(3))
    res = run("index", corpus, "--db", tmp_path / "db", "--encoder", "airrep-flan-small", ok=False)
    assert_one_line_error(res, "sunweiwei/AirRep-Flan-Small", "download", "--local-dir", "--encoder DIR")
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "db").exists()


def test_unknown_model_type_is_one_line_naming_the_folder(published, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for f in published.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "nosuchmodel"}))
    corpus = write_corpus(tmp_path / "c.jsonl", make_rows(3))
    res = run("index", corpus, "--db", tmp_path / "db", "--encoder", folder, ok=False)
    assert_one_line_error(res, str(folder), "'nosuchmodel'")
    assert "upgrade" not in res.output and len(res.output.strip().splitlines()) == 1


def test_published_encoder_trains_and_saves_as_an_airsearch_folder(published, tmp_path):
    """``train --base-encoder FOLDER`` starts from it: gradients reach BERT and the projector, and the
    saved folder (sentence-transformers layout) gives the same vectors and fingerprint."""
    enc = AirRepEncoder.load(published, device="cpu")
    enc.model.train()
    enc.forward_ids(enc.input_ids(ROWS)).pow(2).sum().backward()
    grads = {n: p.grad for n, p in enc.model.named_parameters()}
    assert grads["projector.weight"].abs().sum() > 0
    assert grads["bert.embeddings.word_embeddings.weight"].abs().sum() > 0
    enc.model.zero_grad(set_to_none=True)
    saved = AirRepEncoder.load(enc.save(tmp_path / "saved"), device="cpu")
    assert saved.fingerprint == enc.fingerprint and saved.info.trained
    np.testing.assert_array_equal(saved.encode(ROWS), enc.encode(ROWS))
