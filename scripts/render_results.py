"""Render the results tables of README.md and docs/results.md from the committed JSON under
``benchmarks/results/``, so that no figure there is typed by hand.

A rendered region sits between two markers in a Markdown file::

    <!-- results:NAME -->
    ...written by this script...
    <!-- /results:NAME -->

``python scripts/render_results.py`` rewrites every region in place; ``--check`` writes nothing and
exits 1, naming each region whose text differs from what the JSON renders now (the test suite runs
it). Each table ends with the committed file(s) it was rendered from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
DOCUMENTS = ("README.md", "docs/results.md")
REGION = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)

REPRO = f"{RESULTS}/reproduction/default"
SWEEP = f"{RESULTS}/size_sweep/default"


@cache
def load(path: str) -> Any:
    return json.loads((ROOT / path).read_text())


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(out + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def sources(*paths: str, depth: int) -> str:
    """The files a table was rendered from, as links relative to the document (``depth`` folders down)."""
    up = "../" * depth
    return "Rendered from " + ", ".join(f"[`{p}`]({up}{p})" for p in paths) + ".\n"


def x100(stat: dict[str, Any] | None, interval: bool = True, sign: bool = False) -> str:
    """An LDS (or a difference of two) x100 with its 95% interval: ``17.0 [8.5, 27.0]``."""
    if stat is None:
        return "not run"
    f = "{:+.1f}" if sign else "{:.1f}"
    text = f.format(100 * stat["mean"])
    if interval and stat.get("low") is not None:
        text += " [" + ", ".join(f.format(100 * stat[k]) for k in ("low", "high")) + "]"
    return text


# The reproduction (benchmarks/reproduce.py --scale default): LDS under the two gold protocols

READABLE = {
    "airrep:airrep_retrain": "AirRep, retraining labels",
    "airrep:airrep_teacher": "AirRep, grad-cos teacher labels",
    "base": "base encoder (all-MiniLM-L6-v2, untrained)",
    "bm25": "BM25, full text",
    "bm25:text=response": "BM25, responses only",
    "repsim": "RepSim (target LM hidden states)",
    "random": "random",
}
KINDS = {"retrain": "retraining labels", "teacher": "grad-cos teacher labels"}
HEADLINE = [
    "airrep:airrep_retrain",
    "base",
    "bm25",
    "repsim",
    "gradcos@1ckpt:proj_dim=384",
    "gradcos@1ckpt:proj_dim=2048",
    "haif:proj_dim=2048",
    "random",
]


def _lds(protocol: str) -> dict[str, Any]:
    return load(f"{REPRO}/eval/lds_{protocol}/lds.json")


def _lds_cell(protocol: str, method: str) -> str:
    entry = _lds(protocol)["methods"].get(method)
    if entry is None:
        return "not run"
    n, total = entry["lds"]["n"], max(m["lds"]["n"] for m in _lds(protocol)["methods"].values())
    return x100(entry["lds"]) + (f" ({n} dev examples)" if n != total else "")


def _reproduction_rows(methods: list[str]) -> list[list[str]]:
    return [[READABLE.get(m, f"`{m}`"), _lds_cell("paper", m), _lds_cell("local", m)] for m in methods]


def _lds_sources(depth: int) -> str:
    return sources(*(f"{REPRO}/eval/lds_{p}/lds.json" for p in ("paper", "local")), depth=depth)


def headline(depth: int) -> str:
    head = ["method", "LDS x100, paper gold [95% CI]", "LDS x100, local gold [95% CI]"]
    return table(head, _reproduction_rows(HEADLINE)) + "\n" + _lds_sources(depth)


def reproduction_lds(depth: int) -> str:
    methods = list(_lds("paper")["methods"])
    methods += [m for m in _lds("local")["methods"] if m not in methods]
    head = ["method", "paper gold", "local gold"]
    return table(head, _reproduction_rows(methods)) + "\n" + _lds_sources(depth)


def reproduction_paired(depth: int) -> str:
    rows = []
    for key in _lds("paper")["paired"]:
        if not key.startswith("airrep:airrep_retrain - "):
            continue
        other = key.split(" - ", 1)[1]
        cells = [x100(_lds(p)["paired"].get(key, {}).get("clustered"), sign=True) for p in ("paper", "local")]
        rows.append([f"AirRep (retraining labels) - {READABLE.get(other, f'`{other}`')}", *cells])
    head = ["paired difference (x100, 95% clustered CI)", "paper gold", "local gold"]
    return table(head, rows) + "\n" + _lds_sources(depth)


# The target-LM size sweep (benchmarks/size_sweep.py --scale default)


def _sweep_key(size: str, name: str) -> str:
    return name.replace(f"airrep_{size}_", "airrep_<size>_")


def _sweep_label(key: str, first: str) -> str:
    proxy = key.startswith("proxy:")
    key = key.removeprefix("proxy:")
    if key.startswith("airrep:airrep_"):
        source, labels = key.removeprefix("airrep:airrep_").split("_", 1)
        kind = KINDS.get(labels, "teacher + retraining labels mixed")
        if source == "<size>":
            return f"AirRep, that size's {kind}"
        return f"AirRep, {source} {kind} (the same encoder at every size)"
    label = READABLE.get(key, f"`{key}`")
    return f"{label} with {first}'s gradients (proxy)" if proxy else label


def size_sweep_lds(depth: int, keep: Callable[[str], bool] = lambda name: True) -> str:
    res = load(f"{SWEEP}/results.json")
    sizes = list(res["rows"])
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for size in sizes:
        for row in res["rows"][size]:
            for key in dict.fromkeys([_sweep_key(size, row["name"]), row["name"]]):
                cells.setdefault(key, {})[size] = row
    params = {s: res["lms"][s]["num_parameters"] for s in sizes}
    head = ["method"] + [f"{s} ({params[s] / 1e6:.2f}M)" for s in sizes]
    rows = []
    for key, by_size in cells.items():
        if not keep(key) or (key.startswith("airrep:") and len(by_size) == 1):
            continue  # an encoder scored at one size only: the row of "that size's" encoder shows it
        cols = [x100(by_size[s] | {"mean": by_size[s]["lds"]}) if s in by_size else "not run" for s in sizes]
        rows.append([_sweep_label(key, sizes[0]), *cols])
    return table(head, rows) + "\n" + sources(f"{SWEEP}/results.json", depth=depth)


def size_sweep_headline(depth: int) -> str:
    keep = {
        "airrep:airrep_S0_retrain",
        "base",
        "bm25",
        "gradcos@1ckpt:proj_dim=2048",
        "tracin@1ckpt:proj_dim=2048",
    }
    return size_sweep_lds(depth, keep=lambda name: name in keep)


# AirRep encoder training: how long each committed encoder trained, and its held-out LDS per epoch


def _training_runs() -> list[tuple[str, str]]:
    runs = [
        (f"{REPRO}/stages/encoder_{kind}.json", f"reproduction, {KINDS[kind]}")
        for kind in ("retrain", "teacher")
    ]
    for path in sorted((ROOT / SWEEP / "stages").glob("S*-encoder-*.json")):
        size, _, kind = path.stem.split("-")
        runs.append((f"{SWEEP}/stages/{path.name}", f"size sweep {size}, {KINDS[kind]}"))
    return runs


def encoder_training(depth: int) -> str:
    rows = []
    for path, label in _training_runs():
        stage = load(path)
        curve = stage["lds_per_epoch"]
        trend = "rising at the end" if curve[-1] >= max(curve[:-1]) else "past its best"
        rows.append(
            [
                label,
                str(stage["steps"]),
                str(stage["epochs"]),
                " -> ".join(f"{100 * v:.1f}" for v in curve),
                f"epoch {stage['best_epoch']}",
                trend,
            ]
        )
    head = ["encoder", "steps", "epochs", "held-out LDS x100, base then per epoch", "kept", "curve"]
    return table(head, rows) + "\n" + sources(*(p for p, _ in _training_runs()), depth=depth)


# Attribution cost per method (benchmarks/bench_methods.py)


def bench_methods(depth: int) -> str:
    res = load(f"{RESULTS}/bench_methods.json")
    rows = [
        [
            r["method"],
            f"{r['seconds']:.2f}",
            f"{r['per_pair_ms']:.2f}",
            f"{r['bytes_per_train']:,}",
            f"{r['cost_vs_airrep']:.1f}x",
        ]
        for r in res["rows"]
    ]
    head = ["method", "total s", "ms / pair", "bytes / train example", "cost vs AirRep"]
    note = (
        f"Target LM {res['target_lm_params']:,} parameters, {res['n_train']} train x {res['n_queries']} "
        f"queries, {res['machine']}, {res['threads']} threads; {res['note']}.\n\n"
    )
    return note + table(head, rows) + "\n" + sources(f"{RESULTS}/bench_methods.json", depth=depth)


RENDERERS: dict[str, Callable[[int], str]] = {
    "headline": headline,
    "reproduction-lds": reproduction_lds,
    "reproduction-paired": reproduction_paired,
    "size-sweep-lds": size_sweep_lds,
    "size-sweep-headline": size_sweep_headline,
    "encoder-training": encoder_training,
    "bench-methods": bench_methods,
}


def render(text: str, depth: int, where: str) -> str:
    """``text`` with every results region re-rendered; an unknown region name is an error."""

    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in RENDERERS:
            raise SystemExit(f"{where}: unknown results region {name!r} (known: {', '.join(RENDERERS)})")
        return m.group(1) + RENDERERS[name](depth) + m.group(4)

    return REGION.sub(one, text)


def stale(documents: tuple[str, ...] = DOCUMENTS) -> list[str]:
    """``file: region`` for every rendered region whose text differs from a fresh render."""
    return [f"{doc}: {name}" for doc in documents for name in stale_regions((ROOT / doc).read_text(), doc)]


def stale_regions(text: str, doc: str) -> list[str]:
    """The names of the regions of ``text`` (the document ``doc``, relative to the repository root)
    whose content differs from a fresh render."""
    fresh = render(text, doc.count("/"), doc)
    old = {m.group(2): m.group(3) for m in REGION.finditer(text)}
    new = {m.group(2): m.group(3) for m in REGION.finditer(fresh)}
    return [name for name in old if old[name] != new[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a region is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for line in bad:
            print(f"stale results region: {line} (run python scripts/render_results.py)")
        return 1 if bad else 0
    for doc in DOCUMENTS:
        path = ROOT / doc
        text = path.read_text()
        fresh = render(text, doc.count("/"), doc)
        if fresh != text:
            path.write_text(fresh)
            print(f"rendered {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
