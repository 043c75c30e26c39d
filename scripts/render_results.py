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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling modules, also when loaded by path
from render_converged import RENDERERS as CONVERGED_RENDERERS  # noqa: E402
from results_tables import KINDS, READABLE, RESULTS, ROOT, load, sources, table, x100  # noqa: E402

DOCUMENTS = ("README.md", "docs/results.md")

REGION = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)

REPRO = f"{RESULTS}/reproduction/default"
# the sweep with converged encoders once its report is written (size_sweep.py --scale converged)
SWEEP = next(
    f"{RESULTS}/size_sweep/{scale}"
    for scale in ("converged", "default")
    if (ROOT / RESULTS / "size_sweep" / scale / "results.json").is_file()
)


# The reproduction (benchmarks/reproduce.py --scale default): LDS under the two gold protocols


def _lds(protocol: str) -> dict[str, Any]:
    return load(f"{REPRO}/eval/lds_{protocol}/lds.json")


def _lds_cell(protocol: str, method: str) -> str:
    entry = _lds(protocol)["methods"].get(method)
    if entry is None:
        return "not run"
    n, total = entry["lds"]["n"], max(m["lds"]["n"] for m in _lds(protocol)["methods"].values())
    return x100(entry["lds"]) + (f" ({n} dev examples)" if n != total else "")


def _reproduction_name(method: str) -> str:
    """The row's name; an AirRep row names the optimizer steps its encoder ran."""
    name = READABLE.get(method, f"`{method}`")
    if method.startswith("airrep:airrep_"):
        kind = method.removeprefix("airrep:airrep_")
        name += f" ({load(f'{REPRO}/stages/encoder_{kind}.json')['steps']} steps)"
    return name


def _reproduction_rows(methods: list[str]) -> list[list[str]]:
    return [[_reproduction_name(m), _lds_cell("paper", m), _lds_cell("local", m)] for m in methods]


def _lds_sources(depth: int) -> str:
    return sources(*(f"{REPRO}/eval/lds_{p}/lds.json" for p in ("paper", "local")), depth=depth)


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
        rows.append([f"{_reproduction_name('airrep:airrep_retrain')} - {_reproduction_name(other)}", *cells])
    head = ["paired difference (x100, 95% clustered CI)", "paper gold", "local gold"]
    return table(head, rows) + "\n" + _lds_sources(depth)


# The target-LM size sweep (benchmarks/size_sweep.py --scale default)


def _sweep_key(size: str, name: str) -> str:
    return name.replace(f"airrep_{size}_", "airrep_<size>_")


def _sweep_label(key: str, first: str) -> str:
    proxy = key.startswith("proxy:")
    key = key.removeprefix("proxy:")
    if key in READABLE and key.startswith("airrep:"):  # the converged reproduction's encoder, transferred
        st = load(
            f"{RESULTS}/reproduction/converged/stages/encoder_{key.removeprefix('airrep:airrep_')}.json"
        )
        return (f"{READABLE[key]} of the converged reproduction (S0's layout; the same encoder at every size;"
                f" {st['steps']} steps, stopped: {st['stop_reason']})")  # fmt: skip
    if key.startswith("airrep:airrep_"):
        source, labels = key.removeprefix("airrep:airrep_").split("_", 1)
        kind = KINDS.get(labels, "teacher + retraining labels mixed")
        if source == "<size>":
            return f"AirRep, that size's {kind} ({_sweep_steps(labels)})"
        return f"AirRep, {source} {kind} (the same encoder at every size; {_sweep_steps(labels, source)})"
    label = READABLE.get(key, f"`{key}`")
    return f"{label} with {first}'s gradients (proxy)" if proxy else label


def _sweep_steps(labels: str, size: str | None = None) -> str:
    """How many optimizer steps the sweep's ``labels`` encoder(s) ran (of ``size``, or of every size)."""
    stages = ROOT / SWEEP / "stages"
    found = [
        load(f"{SWEEP}/stages/{path.name}")["steps"]
        for path in sorted(stages.glob(f"{size or 'S*'}-*-{labels}.json"))
        if "encoder" in path.name or "ablation" in path.name
    ]
    steps = sorted(set(found))
    return "steps: " + ("/".join(map(str, steps)) if steps else "not recorded")


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
        "airrep:airrep_retrain",  # the converged reproduction's encoder (a row of the converged sweep)
        "airrep:airrep_S0_retrain",
        "base",
        "bm25",
        "gradcos@1ckpt:proj_dim=2048",
        "tracin@1ckpt:proj_dim=2048",
    }
    return size_sweep_lds(depth, keep=lambda name: name in keep)


def _one_encoder(name: str, first: str) -> str:
    """The readable name of one sweep encoder (``airrep:airrep_S2_teacher``) with its own steps."""
    if not name.startswith("airrep:airrep_S"):
        return _sweep_label(name, first)
    size, labels = name.removeprefix("airrep:airrep_").split("_", 1)
    kind = KINDS.get(labels, "teacher + retraining labels mixed")
    return f"AirRep, {size} {kind} ({_sweep_steps(labels, size)})"


SWEEP_PAIRED_WITH = ("base", "bm25", "gradcos@1ckpt:proj_dim=384")


def size_sweep_paired(depth: int) -> str:
    """Each AirRep encoder of the sweep minus the base encoder, BM25 and ``gradcos@384`` at every size
    (paired by dev query, clustered intervals), from each size's ``eval lds`` stage record."""
    res = load(f"{SWEEP}/results.json")
    sizes = list(res["rows"])
    stages = {s: f"{SWEEP}/stages/{s}-lds.json" for s in sizes}
    paired = {s: load(p)["paired"] for s, p in stages.items() if (ROOT / p).is_file()}
    encoders = list(dict.fromkeys(
        _sweep_key(s, k.split(" - ")[0]) for s in paired for k in paired[s] if k.startswith("airrep:")
    ))  # fmt: skip
    rows = []
    for key in encoders:
        for other in SWEEP_PAIRED_WITH:
            cells = []
            for s in sizes:
                name = key.replace("airrep_<size>_", f"airrep_{s}_")
                cells.append(x100(paired.get(s, {}).get(f"{name} - {other}", {}).get("clustered"), sign=True))
            if sum(c != "not run" for c in cells) > ("<size>" in key):  # one size only: its own row shows it
                rows.append([f"{_sweep_label(key, sizes[0])} - {READABLE.get(other, f'`{other}`')}", *cells])
    head = ["paired difference (x100, 95% clustered CI)", *sizes]
    return (
        table(head, rows) + "\n" + sources(*(p for p in stages.values() if (ROOT / p).is_file()), depth=depth)
    )


def size_sweep_goals(depth: int) -> str:
    """The sweep's goals (``results.json`` ``goals``), each encoder's evidence beside its status."""
    res = load(f"{SWEEP}/results.json")
    sizes = list(res["rows"])
    rows = []
    for goal, found in res["goals"].items():
        if "paired" in found:  # S0: AirRep beats BM25 and base (paired, clustered)
            for enc, diffs in found["paired"].items():
                evidence = "; ".join(
                    f"vs {READABLE.get(b, b)} {x100(d, sign=True)}" for b, d in diffs.items()
                )
                met = enc in found["by"]
                rows.append(
                    [
                        goal,
                        _one_encoder(enc, sizes[0]),
                        evidence,
                        "met" if met else "not met",
                    ]
                )
        elif "dominated_by" in found:  # the largest size's LDS-versus-cost Pareto frontier
            for enc, by in found["dominated_by"].items():
                evidence = (
                    "undominated"
                    if not by
                    else "dominated by " + ", ".join(_sweep_label(b, sizes[0]) for b in by)
                )
                rows.append(
                    [
                        goal,
                        _one_encoder(enc, sizes[0]),
                        evidence,
                        "met" if not by else "not met",
                    ]
                )
        else:  # the SmolLM2 cost ratio
            ratios = found.get("ratios") or {}
            evidence = "; ".join(f"`{k}` {v:.0f}x" for k, v in ratios.items()) or (found.get("why") or "")
            rows.append([goal, "AirRep's query encode", evidence, found["status"]])
    head = ["goal", "encoder", "measured (paired x100 [95% clustered CI] / cost)", ""]
    return table(head, rows) + "\n" + sources(f"{SWEEP}/results.json", depth=depth)


# AirRep encoder training: how long each committed encoder trained, and its held-out LDS per epoch


def _training_runs() -> list[tuple[str, str]]:
    runs = [
        (f"{REPRO}/stages/encoder_{kind}.json", f"reproduction, {KINDS[kind]}")
        for kind in ("retrain", "teacher")
    ]
    short = f"{RESULTS}/size_sweep/default"  # the earlier short runs (the converged sweep has its own table)
    for path in sorted((ROOT / short / "stages").glob("S*-encoder-*.json")):
        size, _, kind = path.stem.split("-")
        runs.append((f"{short}/stages/{path.name}", f"size sweep {size}, {KINDS[kind]}"))
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
    "reproduction-lds": reproduction_lds,
    "reproduction-paired": reproduction_paired,
    "size-sweep-lds": size_sweep_lds,
    "size-sweep-headline": size_sweep_headline,
    "size-sweep-goals": size_sweep_goals,
    "size-sweep-paired": size_sweep_paired,
    "encoder-training": encoder_training,
    "bench-methods": bench_methods,
    **CONVERGED_RENDERERS,
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
