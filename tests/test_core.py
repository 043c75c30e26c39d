"""Core pieces: the encoder, Eq. 7 group score, streaming and blocked scoring, config round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from airsearch.atomic import atomic_path, swap_into_place
from airsearch.config import CommandConfig
from airsearch.data.example import Example, airrep_text
from airsearch.encoder import AirRepEncoder
from airsearch.errors import InputError
from airsearch.labels import normalise_losses
from airsearch.scoring import StreamingGroupScore, TopK, blocked_dot_topk, group_score, iter_blocks


def eq7_numpy(e: np.ndarray, members: np.ndarray) -> float:
    dots = members @ e
    a = np.exp(np.abs(dots) - np.abs(dots).max())
    a /= a.sum()
    return float((a * dots).sum())


def test_group_score_matches_numpy_reference():
    rng = np.random.default_rng(0)
    e, members = rng.normal(size=8), rng.normal(size=(13, 8)) * 2
    got = group_score(torch.tensor(e), torch.tensor(members)).item()
    assert got == pytest.approx(eq7_numpy(e, members), rel=1e-10)
    q = rng.normal(size=(3, 8))
    batch = group_score(torch.tensor(q), torch.tensor(members)).numpy()
    assert np.allclose(batch, [eq7_numpy(x, members) for x in q])


def test_streaming_group_score_equals_one_shot():
    rng = np.random.default_rng(1)
    q, members = rng.normal(size=(4, 6)), rng.normal(size=(50, 6)) * 3
    acc = StreamingGroupScore(q)
    for block in iter_blocks(members, 7):
        acc.update(block)
    assert np.allclose(acc.result(), [eq7_numpy(x, members) for x in q])


def test_blocked_topk_equals_full_sort():
    rng = np.random.default_rng(2)
    q, corpus = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(103, 8)).astype(np.float32)
    scores, idx = blocked_dot_topk(q, iter_blocks(corpus, 10), k=7)
    full = q @ corpus.T
    assert np.array_equal(idx, np.argsort(-full, axis=1)[:, :7])
    assert np.allclose(scores, np.take_along_axis(full, idx, 1), atol=1e-5)
    low_s, low_i = blocked_dot_topk(q, iter_blocks(corpus, 10), k=3, largest=False)
    assert np.array_equal(low_i, np.argsort(full, axis=1)[:, :3])


def test_streaming_group_score_from_scores_with_counts_equals_repeated_members():
    rng = np.random.default_rng(5)
    q, members = rng.normal(size=(3, 6)), rng.normal(size=(20, 6)) * 3
    counts = rng.integers(0, 4, size=20)
    counts[0] = 2  # at least one repeat
    acc = StreamingGroupScore(n_queries=3)
    for s in range(0, 20, 6):
        acc.update_scores(members[s : s + 6] @ q.T, counts[s : s + 6])
    repeated = np.repeat(members, counts, axis=0)  # the plain reference: a member listed c times
    assert acc.count == len(repeated)
    assert np.allclose(acc.result(), [eq7_numpy(x, repeated) for x in q])
    with pytest.raises(TypeError, match="update_scores"):
        acc.update(members)
    with pytest.raises(TypeError):
        StreamingGroupScore(q, n_queries=3)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("per_query_ids", [False, True])
def test_topk_push_with_ids_equals_full_sort(largest, per_query_ids):
    rng = np.random.default_rng(6)
    q, items = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(57, 8)).astype(np.float32)
    ids = rng.permutation(1000)[:57].astype(np.int64)  # row ids, not positions
    q_ids = ids[None, :] + 1000 * np.arange(4)[:, None] if per_query_ids else np.broadcast_to(ids, (4, 57))
    heap = TopK(4, 6, largest=largest)
    for s in range(0, 57, 10):
        block_ids = q_ids[:, s : s + 10] if per_query_ids else ids[s : s + 10]
        heap.push(
            torch.from_numpy(q @ items[s : s + 10].T), torch.from_numpy(np.ascontiguousarray(block_ids))
        )
    scores, got = heap.result()
    full = q @ items.T
    order = np.argsort(-full if largest else full, axis=1)[:, :6]
    assert np.array_equal(got, np.take_along_axis(q_ids, order, 1))
    assert np.allclose(scores, np.take_along_axis(full, order, 1), atol=1e-5)


def test_atomic_swap_replaces_files_and_folders_whole(tmp_path):
    target = tmp_path / "table"
    for content in ("old", "new"):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "part").write_text(content)
    assert (target / "part").read_text() == "new"
    made = tmp_path / "made-elsewhere"
    made.mkdir()
    (made / "other").write_text("x")
    swap_into_place(made, target)
    assert [p.name for p in target.iterdir()] == ["other"] and not made.exists()
    with pytest.raises(RuntimeError), atomic_path(target, is_dir=True) as tmp:
        (tmp / "half").write_text("y")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["other"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]  # no temporary or old folders left


def test_untrained_airrep_equals_base_and_roundtrips(tiny_bert_dir, tmp_path):
    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu")
    ex = [Example(str(i), f"prompt {i} " * (i + 1), f"answer {i}") for i in range(5)]
    v = enc.encode(ex)
    base = SentenceTransformer(str(tiny_bert_dir), device="cpu")  # plain HF folder: mean pooling
    assert np.allclose(v, base.encode([enc.text(x) for x in ex]), atol=1e-5)
    out = enc.save(tmp_path / "enc")
    st = SentenceTransformer(str(out), device="cpu")
    assert np.allclose(st.encode([enc.text(x) for x in ex]), v, atol=1e-6)
    again = AirRepEncoder.load(out, device="cpu")
    assert again.fingerprint == enc.fingerprint
    assert again.info.base_encoder == str(tiny_bert_dir)


def _decoded(enc: AirRepEncoder, ids: tuple[int, ...]) -> str:
    return enc.model.tokenizer.decode(list(ids), skip_special_tokens=True)


def test_long_prompt_keeps_the_whole_short_response(tiny_bert_dir):
    """Issue 10.1: the prompt is cut, never the answer (the official code keeps input_ids[-max_len:])."""
    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu", max_seq_length=32)
    prompt = " ".join(f"word{i}" for i in range(200))  # far over 32 tokens
    ex = Example("long", prompt, "the answer is blue")
    (ids,) = enc.input_ids([ex])
    tok = enc.model.tokenizer
    response = tok("the answer is blue", add_special_tokens=False)["input_ids"]
    assert len(ids) == 32
    assert tuple(ids[-1 - len(response) : -1]) == tuple(response)  # whole response, then [SEP]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    text = _decoded(enc, ids)
    assert text.startswith("question :") and text.endswith("answer : the answer is blue")
    assert "word199" in text.replace(" ", "") and "word0" not in text.split()  # prompt cut from the left
    # a response longer than the budget keeps its beginning
    long_response = " ".join(f"r{i}" for i in range(100))
    (ids,) = enc.input_ids([Example("r", "short prompt", long_response)])
    assert len(ids) == 32 and "r0" in _decoded(enc, ids).replace(" ", "")
    # the vector is the vector of exactly these ids (the same function feeds indexing and queries)
    v = enc.encode([ex])
    with torch.no_grad():
        direct = enc.forward_ids(enc.input_ids([ex])).numpy()
    assert np.allclose(v, direct, atol=1e-6)


def test_budget_input_reference():
    """budget_input against a plain rule: markers + response first, prompt keeps its tail."""
    from airsearch.encoder import budget_input

    q, a = (1, 2), (3,)
    prompt, response = tuple(range(10, 30)), (90, 91, 92)
    for budget in range(0, 30):
        got = budget_input(q, prompt, a, response, budget)
        assert len(got) == min(budget, len(q) + len(prompt) + len(a) + len(response))
        room = max(budget - 3, 0)
        kept_r = response[:room]
        n_p = room - len(kept_r)
        kept_p = prompt[-n_p:] if n_p > 0 else ()
        assert got == (q + kept_p + a + kept_r)[:budget]


def test_encoder_made_with_old_truncation_is_refused(tiny_bert_dir, tmp_path):
    import json

    from airsearch.encoder import ENCODER_INFO_FILE, INPUT_RULE

    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu")
    out = enc.save(tmp_path / "enc")
    info = json.loads((out / ENCODER_INFO_FILE).read_text())
    assert info["input_rule"] == INPUT_RULE
    del info["input_rule"]  # as written before the rule was recorded
    info["trained"] = True
    (out / ENCODER_INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(InputError, match="old input rule"):
        AirRepEncoder.load(out, device="cpu")
    info["trained"] = False  # an untrained folder only changes its inputs: upgraded
    (out / ENCODER_INFO_FILE).write_text(json.dumps(info))
    assert AirRepEncoder.load(out, device="cpu").info.input_rule == INPUT_RULE


def test_input_rule_is_part_of_the_fingerprint(tiny_bert_dir):
    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu")
    before = enc.fingerprint
    enc.info.input_rule = "cut-right-v1"
    enc.invalidate_fingerprint()
    assert enc.fingerprint != before


def test_airrep_text_template():
    long_prompt = " ".join(f"w{i}" for i in range(300))
    text = airrep_text(long_prompt, "yes")
    assert text.startswith("Question: w0 w1")
    assert "w255" in text and "w256" not in text
    assert text.endswith("\nAnswer: yes")


def test_normalise_losses_eq8():
    losses = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    y = normalise_losses(losses)
    assert np.allclose(y[:, 0], -(losses[:, 0] - 3.0) / np.std(losses[:, 0]))
    assert np.allclose(y[:, 1], 0.0)  # constant column: std 0 -> 1


@dataclasses.dataclass
class _Cfg(CommandConfig):
    n: int = 3
    name: str = "x"
    tags: tuple[str, ...] = ()


def test_config_roundtrip_and_errors(tmp_path):
    cfg = _Cfg(n=5, tags=("a", "b"))
    for suffix in (".yaml", ".json"):
        cfg.save(tmp_path / f"c{suffix}")
        assert _Cfg.load(tmp_path / f"c{suffix}") == cfg
    with pytest.raises(InputError, match="unknown field"):
        _Cfg.from_dict({"m": 1})
    with pytest.raises(InputError, match="field 'n'"):
        _Cfg.from_dict({"n": "many"})


def test_airrep_token_contributions_sum_to_the_score(tiny_bert_dir):
    """Issue 13: the per-token split of e(q) . e(t) is exact on both sides, and matches encode()."""
    from airsearch.explain import explain_airrep

    torch.manual_seed(0)
    enc = AirRepEncoder.from_base(tiny_bert_dir, device="cpu")
    with torch.no_grad():  # a trained-like projection with a bias, so the bias share matters
        enc.model.projector.weight.add_(0.2 * torch.randn_like(enc.model.projector.weight))
        enc.model.projector.bias.add_(0.3 * torch.randn_like(enc.model.projector.bias))
    enc.invalidate_fingerprint()
    q = Example("q", "what colour is the sky", "the sky is blue")
    row = Example("r", "name a colour " * 5, "blue like the sea")
    ex = explain_airrep(enc, q, row)
    vq, vr = enc.encode([q, row])
    assert abs(ex.score - float(vq @ vr)) < 1e-5 * max(1.0, abs(ex.score))
    assert abs(sum(t.contribution for t in ex.row_tokens) - ex.score) < 1e-5
    assert abs(sum(t.contribution for t in ex.query_tokens) - ex.score) < 1e-5
    assert len(ex.row_tokens) == len(enc.input_ids([row])[0])
    assert ex.row_tokens[0].special and not ex.row_tokens[1].special
    assert "blue" in [t.token for t in ex.row_tokens]
