"""Encoder runtimes (``--runtime torch|onnx|openvino``, ``--quantize none|int8``): the exported encoder
gives torch's vectors, the runtime is part of the fingerprint an index records, and an index is
queried (or added to) with the runtime it was built with, or refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.store import IndexStore
from airsearch.trainers.encoder_training.config import TrainConfig
from airsearch.trainers.encoder_training.trainer import train_encoder

from airsearch.data.corpus import load_corpus
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.labels import SplitLabels
from tests.helpers.cli import assert_one_line_error, run


@pytest.fixture(autouse=True)
def runtime_cache(tmp_path_factory, monkeypatch) -> Path:
    """One export cache for the module's tests (exports are reused across them, never in ~/.cache)."""
    cache = tmp_path_factory.getbasetemp() / "runtime_cache"
    monkeypatch.setenv("AIRSEARCH_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_encoder_gives_the_torch_vectors_and_its_own_fingerprint(
    runtime, tiny_encoder_dir, corpus_file, runtime_cache
):
    examples = load_corpus(corpus_file).examples[:24]
    torch_enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu")
    enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu", runtime=runtime)
    np.testing.assert_allclose(enc.encode(examples, batch_size=7), torch_enc.encode(examples), atol=1e-5)
    assert enc.weights_fingerprint == torch_enc.fingerprint != enc.fingerprint
    assert (enc.describe()["runtime"], enc.describe()["quantize"]) == (runtime, "none")
    exports = sorted(runtime_cache.glob(f"runtimes/*/{runtime}-airsearch-*"))
    assert len(exports) == 1
    made = {p: p.stat().st_mtime_ns for p in exports[0].iterdir()}
    again = AirRepEncoder.load(tiny_encoder_dir, device="cpu", runtime=runtime)  # from the cache
    assert {p: p.stat().st_mtime_ns for p in exports[0].iterdir()} == made
    assert again.fingerprint == enc.fingerprint


@pytest.mark.parametrize(
    ("runtime", "quantize"), [("onnx", "none"), ("openvino", "none"), ("openvino", "int8")]
)
def test_exported_encoder_computes_at_the_precision_its_name_says(
    runtime, quantize, tiny_encoder_dir, corpus_file
):
    """Read from the compiled model itself, so the check means something on a CPU with avx512_bf16 or
    AMX, where OpenVINO's CPU plugin would otherwise choose bf16 (int8 quantises weights only)."""
    enc = AirRepEncoder.load(tiny_encoder_dir, device="cpu", runtime=runtime, quantize=quantize)
    assert enc.precision == "f32"
    assert enc.describe()["precision"] == "f32"
    if runtime == "openvino":
        import openvino as ov

        from airsearch.compiled import openvino_precision

        compiled = ov.Core().compile_model(
            str(enc._compiled.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        assert openvino_precision(compiled) == "f32"
        examples = load_corpus(corpus_file).examples[:8]
        torch_vectors = AirRepEncoder.load(tiny_encoder_dir, device="cpu").encode(examples)
        tolerance = 1e-5 if quantize == "none" else 0.05
        np.testing.assert_allclose(enc.encode(examples), torch_vectors, atol=tolerance)


def test_lm_and_encoder_load_in_fp32_from_a_bf16_folder(tmp_path, tiny_lm_dir):
    """transformers 5 keeps a checkpoint's stored dtype unless asked: airsearch asks for fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from airsearch.lm.model import load_lm

    folder = tmp_path / "bf16"
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).to(torch.bfloat16)
    model.save_pretrained(folder)
    for extra in Path(tiny_lm_dir).iterdir():  # the tokenizer files
        if not extra.name.endswith((".safetensors", "config.json")):
            (folder / extra.name).write_bytes(extra.read_bytes())
    assert next(load_lm(folder, device="cpu").model.parameters()).dtype == torch.float32
    assert next(load_lm(folder, device="cpu", dtype="bf16").model.parameters()).dtype == torch.bfloat16


def test_int8_index_is_queried_on_int8_and_other_runtimes_are_refused(
    tmp_path, tiny_encoder_dir, corpus_file
):
    db = tmp_path / "db"
    common = ["--db", db, "--encoder", tiny_encoder_dir]
    summary = json.loads(
        run("index", corpus_file, *common, "--runtime", "onnx", "--quantize", "int8", "--json").stdout
    )
    int8 = AirRepEncoder.load(tiny_encoder_dir, device="cpu", runtime="onnx", quantize="int8")
    assert summary["encoder_fingerprint"] == int8.fingerprint
    table = IndexStore(db).open()
    assert (table.meta.encoder["runtime"], table.meta.encoder["quantize"]) == ("onnx", "int8")
    assert "on onnx-int8" in run("info", "--db", db).stdout
    examples = load_corpus(corpus_file).examples
    vectors = table.take_vectors(list(range(len(examples))))
    torch_vectors = AirRepEncoder.load(tiny_encoder_dir, device="cpu").encode(examples)
    cosine = (
        (vectors * torch_vectors).sum(1)
        / np.linalg.norm(vectors, axis=1)
        / np.linalg.norm(torch_vectors, axis=1)
    )
    assert cosine.min() > 0.9 and not np.allclose(vectors, torch_vectors, atol=1e-4)  # int8, not fp32

    query = ["query", "--db", db, "--prompt", examples[3].prompt, "--response", examples[3].response]
    found = json.loads(run(*query, "-k", "3", "--json").stdout)  # the index's runtime by default
    assert len(found[0]["proponents"]) == 3
    for flags, shown in (
        (["--runtime", "torch"], "'torch'"),
        (["--runtime", "onnx", "--quantize", "none"], "'onnx'"),
        (["--runtime", "openvino"], "'openvino'"),
    ):
        assert_one_line_error(run(*query, *flags, ok=False), "built with the 'onnx-int8'", shown, "--runtime")
    before = table.version
    refused = run("index", corpus_file, *common, "--upsert", ok=False)  # torch rows into an int8 table
    assert_one_line_error(refused, "'onnx-int8'", "runtime onnx, quantize int8")
    assert IndexStore(db).open().version == before


def test_int8_is_refused_on_torch():
    with pytest.raises(InputError) as err:
        IndexConfig(corpus=["c.jsonl"], db="db", quantize="int8")
    assert err.value.field == "quantize"
    with pytest.raises(InputError) as err:
        TrainConfig(out="enc", runtime="tensorrt")  # type: ignore[arg-type]
    assert err.value.field == "runtime"


def test_training_measures_the_trained_encoder_on_the_runtime(tmp_path, tiny_bert_dir, corpus_file):
    examples = {e.id: e for e in load_corpus(corpus_file).examples}
    ids = list(examples)
    rng = np.random.default_rng(0)
    splits = []
    for s in range(3):
        members = [list(rng.choice(ids[:40], 4, replace=False)) for _ in range(4)]
        dev = ids[40 + 5 * s : 45 + 5 * s]
        splits.append(SplitLabels(s, dev, list(range(4)), members, rng.normal(size=(4, 5))))
    cfg = TrainConfig(
        out=str(tmp_path / "enc"),
        base_encoder=str(tiny_bert_dir),
        epochs=1,
        subsets_per_step=4,
        dev_per_step=4,
        device="cpu",
        batch_size=8,
        runtime="onnx",
    )
    result = train_encoder(cfg, splits=splits, examples=examples)
    assert result.runtime == "onnx" and result.runtime_lds == pytest.approx(result.best_lds, abs=1e-4)
    info = json.loads((tmp_path / "enc" / "airsearch_encoder.json").read_text())
    assert info["training"]["runtime_heldout_lds"] == pytest.approx(result.runtime_lds)
    assert AirRepEncoder.load(tmp_path / "enc", device="cpu").fingerprint == result.encoder_fingerprint
