"""Encode throughput and quality of every encoder runtime, side by side with raw sentence-transformers.

One run measures, on the same machine state:

* **throughput** (rows/s) of ``SentenceTransformer.encode`` on the templated texts (the raw call, torch)
  and of ``AirRepEncoder.encode_stream`` on each runtime (torch, onnx, onnx-int8, openvino,
  openvino-int8; :mod:`airsearch.runtime`), on two corpora: rows of the bundled sample (mean ~94
  tokens) and short synthetic rows (``random_word_examples``, ~15 tokens). Runs alternate (raw, torch,
  onnx, ...) ``--repeats`` times so that load from other jobs on the shared machine hits every path
  alike; wall: the fastest run of each, CPU: the median process time (all threads).
* **quality** of each runtime against the torch fp32 vectors: the cosine per row (min / mean) and the
  recall@10 of a search of ``--queries`` held-out queries over ``--recall-rows`` sample rows, both
  encoded on the runtime, against the same search in fp32.

    python benchmarks/bench_encode.py [--rows 128] [--short-rows 512] [--repeats 3] [--batch-size 64]
        [--recall-rows 2000] [--queries 200] [--runtimes torch onnx-int8 ...] [--out DIR]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_options import RESULTS, bench_parser

from airsearch import (
    AirRepEncoder,
    Example,
    load_corpus,
    load_queries,
    random_word_examples,
    sample_corpus_path,
    sample_queries_path,
)

RUNTIMES = (("torch", "none"), ("onnx", "none"), ("onnx", "int8"), ("openvino", "none"), ("openvino", "int8"))


def label(runtime: str, quantize: str) -> str:
    return runtime if quantize == "none" else f"{runtime}-{quantize}"


def raw_sentence_transformer(encoder: AirRepEncoder) -> Any:
    """The same encoder saved and loaded by sentence-transformers itself (the raw baseline; airsearch's
    own loader no longer uses sentence-transformers)."""
    import tempfile

    from sentence_transformers import SentenceTransformer

    folder = Path(tempfile.mkdtemp(prefix="bench_encode_")) / "encoder"
    encoder.save(folder)
    return SentenceTransformer(str(folder), device="cpu")


def throughput(
    encoders: dict[str, AirRepEncoder], examples: list[Example], batch: int, repeats: int
) -> dict[str, dict]:
    """Rows/s of the raw sentence-transformers call and of every runtime, runs alternating; each
    runtime's cosine to the torch vectors of the same rows."""
    raw_model = raw_sentence_transformer(encoders["torch"])
    texts = [encoders["torch"].text(e) for e in examples]
    paths = {
        "raw sentence-transformers": lambda: raw_model.encode(
            texts, batch_size=batch, show_progress_bar=False
        )
    }
    for name, enc in encoders.items():
        paths[name] = lambda enc=enc: np.concatenate(
            [v for _, v in enc.encode_stream(examples, batch_size=batch)]
        )
    for fn in paths.values():  # warm-up (first-call allocations, lazy kernels)
        fn()
    wall: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    out: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    n = len(examples)
    raw_wall, raw_cpu = (
        min(wall["raw sentence-transformers"]),
        float(np.median(cpu["raw sentence-transformers"])),
    )
    return {
        name: {
            "rows_per_second": round(n / min(wall[name]), 1),
            "cpu_rows_per_second": round(n / float(np.median(cpu[name])), 1),
            "speedup_over_raw": round(raw_wall / min(wall[name]), 2),
            "cpu_speedup_over_raw": round(raw_cpu / float(np.median(cpu[name])), 2),
            "seconds": [round(x, 3) for x in wall[name]],
            "cpu_seconds": [round(x, 3) for x in cpu[name]],
            "cosine_to_torch_min": round(float(cosines(out[name], out["torch"]).min()), 5),
        }
        for name in paths
    }


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "(unknown CPU)"


def cpu_flags(wanted: tuple[str, ...]) -> list[str]:
    """Which of ``wanted`` the CPU reports (the ones that let a runtime pick bf16 or fp16 on its own)."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in have]
    return []


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def top10(corpus: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1)[:, :10]


def quality(
    encoders: dict[str, AirRepEncoder], rows: list[Example], queries: list[Example], batch: int
) -> dict[str, dict]:
    """Cosine to the torch fp32 vectors and recall@10 of each runtime's search against fp32 search
    (the fp32 exports too: a runtime that silently computed in bf16 shows here)."""
    vectors = {
        name: (enc.encode(rows, batch_size=batch), enc.encode(queries, batch_size=batch))
        for name, enc in encoders.items()
    }
    ref_rows, ref_queries = vectors["torch"]
    truth = top10(ref_rows, ref_queries)
    out = {}
    for name, (r, q) in vectors.items():
        cos = cosines(np.concatenate([r, q]), np.concatenate([ref_rows, ref_queries]))
        found = top10(r, q)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        out[name] = {
            "cosine_min": round(float(cos.min()), 5),
            "cosine_mean": round(float(cos.mean()), 5),
            "recall_at_10": round(float(recall), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS)
    ap.add_argument("--rows", type=int, default=128, help="sample rows timed")
    ap.add_argument("--short-rows", type=int, default=512, help="short synthetic rows timed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--recall-rows", type=int, default=2000, help="sample rows searched for recall@10")
    ap.add_argument("--queries", type=int, default=200, help="held-out queries for recall@10")
    ap.add_argument(
        "--runtimes",
        nargs="+",
        choices=[label(*r) for r in RUNTIMES],
        default=[label(*r) for r in RUNTIMES],
        help="runtimes measured (torch, the reference, always is)",
    )
    ap.add_argument("--encoder", default=None, help="AirRep folder (default: the packaged untrained AirRep)")
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    t_load = {}
    encoders = {}
    for runtime, quantize in RUNTIMES:
        if label(runtime, quantize) not in {"torch", *args.runtimes}:
            continue
        t0 = time.perf_counter()
        encoders[label(runtime, quantize)] = AirRepEncoder.load(
            args.encoder, device="cpu", runtime=runtime, quantize=quantize
        )
        t_load[label(runtime, quantize)] = round(time.perf_counter() - t0, 1)
    sample = load_corpus(sample_corpus_path()).examples
    rng = np.random.default_rng(0)
    timed = [sample[i] for i in rng.choice(len(sample), args.rows, replace=False)]
    short = random_word_examples(args.short_rows, seed=0)
    tok = encoders["torch"]
    corpora = {"sample": timed, "short": short}
    result: dict = {
        "machine": f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores (shared with other jobs), "
        f"torch threads {torch.get_num_threads()}",
        "cpu_bf16_flags": cpu_flags(("avx512_bf16", "amx_bf16", "avx512_fp16")),
        "precision": {name: enc.precision for name, enc in encoders.items()},
        "model": (args.encoder or "default AirRep (all-MiniLM-L6-v2 + identity projection)")
        + f", max_seq_length {tok.info.max_seq_length}",
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "load_seconds": t_load,
        "corpora": {},
    }
    for name, rows in corpora.items():
        tokens = [len(x) for x in tok.input_ids(rows)]
        print(f"[{name}] {len(rows)} rows, mean {np.mean(tokens):.1f} tokens", flush=True)
        result["corpora"][name] = {
            "rows": len(rows),
            "mean_tokens_per_row": round(float(np.mean(tokens)), 1),
            "throughput": throughput(encoders, rows, args.batch_size, args.repeats),
        }
        print(json.dumps(result["corpora"][name]["throughput"], indent=1), flush=True)
    queries = load_queries(sample_queries_path()).examples[: args.queries]
    result["quality"] = {
        "rows": min(args.recall_rows, len(sample)),
        "queries": len(queries),
        "by_runtime": quality(encoders, sample[: args.recall_rows], queries, args.batch_size),
    }
    out = args.out
    previous = json.loads((out / "encode.json").read_text()) if (out / "encode.json").exists() else {}
    if "lds" in previous:  # measured by a separate run (see write_markdown); kept
        result["lds"] = previous["lds"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out)
    print(json.dumps(result["quality"], indent=1))
    return 0


def write_markdown(result: dict, out: Path) -> None:
    lines = [
        "# Encode throughput and quality by runtime (`benchmarks/bench_encode.py`)",
        "",
        f"Machine: {result['machine']}. Model: {result['model']}. Batch {result['batch_size']}, "
        f"{result['repeats']} alternating repeats; wall: fastest run of each path; CPU: median process time "
        "(all threads). Speed-ups are over raw sentence-transformers in the same run.",
        "",
        f"CPU flags that let a runtime choose a lower precision on its own: "
        f"{', '.join(result.get('cpu_bf16_flags') or ['none'])}. Activation precision each runtime reports "
        "(read back from the compiled model; int8 quantises weights only): "
        + ", ".join(f"{k} {v}" for k, v in result.get("precision", {}).items())
        + ".",
        "",
    ]
    for name, c in result["corpora"].items():
        lines += [
            f"**{name}** corpus: {c['rows']} rows, mean {c['mean_tokens_per_row']} tokens per row.",
            "",
            "| path | rows/s (wall) | x raw | rows/s (CPU) | x raw (CPU) | cosine to torch (min) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for path, t in c["throughput"].items():
            shown = (
                path
                if path.startswith("raw")
                else f"airsearch `--runtime {path.split('-')[0]}`"
                + (" `--quantize int8`" if path.endswith("int8") else "")
            )
            lines.append(
                f"| {shown} | {t['rows_per_second']} | {t['speedup_over_raw']} | {t['cpu_rows_per_second']} | "
                f"{t['cpu_speedup_over_raw']} | {t['cosine_to_torch_min']} |"
            )
        lines.append("")
    q = result["quality"]
    lines += [
        f"**Quality of every runtime** against torch fp32: cosine per row over {q['rows']} sample rows + {q['queries']} held-out "
        f"queries; recall@10 of the {q['queries']} queries searched (exact dot product) over the {q['rows']} rows, "
        "both encoded on the runtime, against the same search in fp32.",
        "",
        "| runtime | cosine min | cosine mean | recall@10 vs fp32 |",
        "|---|---:|---:|---:|",
    ]
    for name, v in q["by_runtime"].items():
        lines.append(f"| {name} | {v['cosine_min']} | {v['cosine_mean']} | {v['recall_at_10']} |")
    lines += [
        "",
        f"Runtime load (first use exports and caches the model), seconds: {result['load_seconds']}.",
        "",
    ]
    lds = result.get("lds")
    if lds:
        lines += [lds["markdown"], ""]
    else:
        lines += ["LDS on the evaluation harness: not measured in this run.", ""]
    (out / "encode.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
