"""Start-up of the ``airsearch`` command: ``--help``, ``--version`` and option errors (issue 15), and
the commands that touch data, cold (issue 28).

The command imports its click layer and the config dataclasses only; torch, transformers and LanceDB
load inside the command that needs them. This measures, on this machine:

* the wall time of each command line (median of ``--repeats`` runs of the installed console script);
* ``python -X importtime`` of what they import (``airsearch.cli.main``: the cumulative time of the
  top-level import), and of what the CLI imported eagerly before (every command module and the heavy
  modules behind them), the start-up every command paid then;
* **cold data commands**: ``query``, ``select`` and ``info`` on a 3,000-row index (default encoder),
  a malformed corpus line given to ``index`` and a missing index given to ``query``, each a new
  process (the OS file cache is warm: "cold" means no airsearch process was running), run by this
  checkout and, with ``--before PYTHON``, by an older checkout's Python in the same run, alternating;
  plus ``-X importtime`` of the cold ``query`` (where its time goes, and whether torch, transformers or
  sentence-transformers is imported). The index is built by this checkout, so its ``index`` writes the
  torch-free query encoder (``airsearch.query_encoder``) into ``WORK/cache`` (``$AIRSEARCH_CACHE``).

    python benchmarks/bench_startup.py [--repeats 5] [--data-repeats 3] [--before /tmp/before/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_options import RESULTS, bench_parser

LINES = [
    ["--help"],
    ["--version"],
    ["--bogus"],
    ["index", "--bogus"],
    ["index", "--help"],
    ["eval", "--help"],
]
# what `airsearch.cli.main` imported at start-up before (every command module, eagerly)
EAGER = (
    "airsearch.indexers.build, airsearch.indexers.query, airsearch.indexers.select, airsearch.indexers.store, "
    "airsearch.trainers.labels.generate, airsearch.trainers.encoder_training.trainer, "
    "airsearch.trainers.attribute, airsearch.cli.eval_commands, airsearch.lm.info"
)


def wall(argv: list[str], repeats: int) -> dict:
    exe = shutil.which("airsearch") or sys.executable
    cmd = [exe, *argv] if exe != sys.executable else [exe, "-m", "airsearch.cli.main", *argv]
    times, code = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        code = subprocess.run(cmd, capture_output=True).returncode
        times.append(time.perf_counter() - t0)
    return {"argv": " ".join(argv), "exit_code": code, "median_s": round(statistics.median(times), 3)}


def import_rows(args: list[str]) -> list[tuple[str, int, int]]:
    """``(module, cumulative microseconds, nesting)`` of every import ``python -X importtime ARGS`` reports."""
    err = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(2)), len(m.group(3))))
    return rows


def importtime(statement: str) -> dict:
    """Total and largest cumulative import times (seconds) reported by ``python -X importtime``."""
    rows = import_rows(["-c", statement])
    top_level = [r for r in rows if r[2] == min(r[2] for r in rows)]
    heavy = sorted((r for r in rows if "." not in r[0]), key=lambda r: -r[1])[:5]
    return {
        "statement": statement,
        "total_s": round(sum(r[1] for r in top_level) / 1e6, 3),
        "largest_top_level_packages_s": {name: round(us / 1e6, 3) for name, us, _ in heavy},
    }


ROWS = 3000


def data_lines(root: Path) -> dict[str, list[str]]:
    """The data command lines, on the index and files under ``root``."""
    db, bad, targets = root / "db", root / "bad.jsonl", root / "targets.jsonl"
    query = ["query", "--db", str(db), "--prompt", "red fox", "--response", "blue sky", "-k", "5"]
    select = [
        "select",
        "--db",
        str(db),
        "--targets",
        str(targets),
        "-n",
        "10",
        "--out",
        str(root / "sel.jsonl"),
    ]
    return {
        "query (3,000 rows)": query,
        "select (3,000 rows, 4 targets)": select,
        "info": ["info", "--db", str(db)],
        "refused: malformed corpus line (index)": ["index", str(bad), "--db", str(root / "new")],
        "refused: missing index (query)": [
            "query",
            "--db",
            str(root / "nodb"),
            "--prompt",
            "p",
            "--response",
            "r",
        ],
    }


def prepare(root: Path, rows: int = ROWS, encoder: str = "default") -> None:
    """A ``rows``-row corpus (3,000) indexed with ``encoder`` (the default one), a target file and a
    malformed corpus."""
    from airsearch import random_word_examples, write_rows

    if not (root / "db").exists():
        write_rows(root / "corpus.jsonl", random_word_examples(rows, seed=0))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "airsearch.cli.main",
                "-q",
                "index",
                str(root / "corpus.jsonl"),
                "--db",
                str(root / "db"),
                "--encoder",
                encoder,
            ],
            check=True,
            capture_output=True,
        )
    write_rows(root / "targets.jsonl", random_word_examples(4, prefix="t", seed=1))
    (root / "bad.jsonl").write_text('{"id": "a", "prompt": "p", "response": "r"}\n{"id": "b", "prompt": \n')


def cold(pythons: dict[str, str], lines: dict[str, list[str]], repeats: int, root: Path) -> list[dict]:
    """Median wall time of each line under each Python, runs alternating between them."""
    times: dict[tuple[str, str], list[float]] = {}
    codes: dict[tuple[str, str], int] = {}
    for _ in range(repeats):
        for name, argv in lines.items():
            for label, python in pythons.items():
                (root / "sel.jsonl").unlink(missing_ok=True)
                t0 = time.perf_counter()
                code = subprocess.run(
                    [python, "-m", "airsearch.cli.main", "-q", *argv], capture_output=True
                ).returncode
                times.setdefault((name, label), []).append(time.perf_counter() - t0)
                codes[(name, label)] = code
    return [
        {
            "command": name,
            "argv": " ".join(lines[name]).replace(str(root), "TMP"),
            **{f"{label}_median_s": round(statistics.median(times[(name, label)]), 2) for label in pythons},
            **{f"{label}_exit_code": codes[(name, label)] for label in pythons},
        }
        for name in lines
    ]


def query_imports(argv: list[str]) -> dict:
    """``-X importtime`` of one cold query: total import time, the largest top-level packages."""
    rows = import_rows(["-m", "airsearch.cli.main", "-q", *argv])
    top = min(r[2] for r in rows)
    heavy = sorted((r for r in rows if "." not in r[0]), key=lambda r: -r[1])[:8]
    return {
        "total_s": round(sum(r[1] for r in rows if r[2] == top) / 1e6, 2),
        "largest_s": {name: round(us / 1e6, 2) for name, us, _ in heavy},
        "sentence_transformers_imported": any(r[0] == "sentence_transformers" for r in rows),
        "torch_imported": any(r[0] == "torch" for r in rows),
        "transformers_imported": any(r[0] == "transformers" for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, out=RESULTS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-repeats", type=int, default=3)
    ap.add_argument(
        "--before", help="Python of an older checkout, timed in the same run (e.g. main at 79180a1)"
    )
    ap.add_argument("--before-label", default="before (main 79180a1)")
    ap.add_argument("--work", help="folder for the index (kept; reused when it holds one)")
    ap.add_argument("--rows", type=int, default=ROWS, help="rows of the indexed corpus")
    ap.add_argument(
        "--encoder", default="default", help="AirRep folder of the index (default: the packaged one)"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    root = Path(args.work or tempfile.mkdtemp(prefix="bench_startup_"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["AIRSEARCH_CACHE"] = str(root / "cache")  # the query export `index` writes, not the user's
    prepare(root, args.rows, args.encoder)
    lines = data_lines(root)
    pythons = {"after": sys.executable, **({"before": args.before} if args.before else {})}
    load_start = round(os.getloadavg()[0], 2)
    data = cold(pythons, lines, args.data_repeats, root)
    result = {
        "machine": {
            "description": "2-core AMD EPYC (avx512_bf16), CPU only, shared with other jobs",
            "cpus": os.cpu_count(),
            "load_average_1min": load_start,
            "load_average_1min_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "command_lines": [wall(argv, args.repeats) for argv in LINES],
        "import_now": importtime("import airsearch.cli.main"),
        "import_eager_before": importtime(f"import airsearch.cli.main, {EAGER}"),
        "cold_data_commands": {
            "before": args.before_label if args.before else None,
            "rows": args.rows,
            "runs": data,
        },
        "cold_query_imports": query_imports(lines["query (3,000 rows)"]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    m, now, before = result["machine"], result["import_now"], result["import_eager_before"]
    lines_md = [
        "# Start-up (`benchmarks/bench_startup.py`)",
        "",
        f"{m['description']}: {m['cpus']} CPUs, 1-minute load average {m['load_average_1min']} at the start and "
        f"{m['load_average_1min_end']} at the end (the machine is shared and was loaded: the figures are "
        f"slower than on a quiet one), Python {m['python']}.",
        "",
        "| command line | exit code | wall time, median of " + str(args.repeats) + " |",
        "|---|---|---|",
        *[
            f"| `airsearch {r['argv']}` | {r['exit_code']} | {r['median_s']:.2f} s |"
            for r in result["command_lines"]
        ],
        "",
        "`python -X importtime`, cumulative time of the top-level imports:",
        "",
        "| what is imported | import time | largest packages (cumulative: one imported by another counts in both) |",
        "|---|---|---|",
        f"| `airsearch.cli.main` now (the CLI, config dataclasses) | {now['total_s']:.2f} s | "
        + ", ".join(f"{k} {v:.2f} s" for k, v in now["largest_top_level_packages_s"].items())
        + " |",
        f"| what `airsearch.cli.main` imported eagerly before (every command module) | {before['total_s']:.2f} s | "
        + ", ".join(f"{k} {v:.2f} s" for k, v in before["largest_top_level_packages_s"].items())
        + " |",
        "",
        *data_markdown(result, args),
    ]
    (args.out / "startup.md").write_text("\n".join(lines_md))
    print("\n".join(lines_md))
    return 0


def data_markdown(result: dict, args: argparse.Namespace) -> list[str]:
    d, q = result["cold_data_commands"], result["cold_query_imports"]
    has_before = d["before"] is not None
    head = "| command | exit code | this checkout |" + (f" {d['before']} |" if has_before else "")
    out = [
        f"## Cold data commands ({d['rows']:,}-row index, default encoder)",
        "",
        f"Each a new `python -m airsearch.cli.main -q ...` process, median of {args.data_repeats} runs; "
        + ("the two checkouts alternate run by run, so both see the same load." if has_before else ""),
        "",
        head,
        "|---|---|---|" + ("---|" if has_before else ""),
    ]
    for r in d["runs"]:
        row = f"| {r['command']} | {r['after_exit_code']} | {r['after_median_s']:.2f} s |"
        if has_before:
            row += f" {r['before_median_s']:.2f} s |"
        out.append(row)
    out += [
        "",
        f"Where the cold `query` spends its imports (`-X importtime`, this checkout): {q['total_s']:.2f} s in all; "
        + ", ".join(f"{k} {v:.2f} s" for k, v in q["largest_s"].items())
        + f". Imported: torch {_yes(q.get('torch_imported'))}, transformers {_yes(q['transformers_imported'])}, "
        f"sentence-transformers {_yes(q['sentence_transformers_imported'])}.",
        "",
    ]
    return out


def _yes(flag: bool | None) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    sys.exit(main())
