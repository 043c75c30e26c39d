"""Start-up of the ``airsearch`` command: ``--help``, ``--version`` and option errors (issue 15).

The command imports its click layer and the config dataclasses only; torch, transformers and LanceDB
load inside the command that needs them. This measures, on this machine:

* the wall time of each command line (median of ``--repeats`` runs of the installed console script);
* ``python -X importtime`` of what they import (``airsearch.cli.main``: the cumulative time of the
  top-level import), and of what the CLI imported eagerly before (every command module and the heavy
  modules behind them), the start-up every command paid then.

    python benchmarks/bench_startup.py [--repeats 5]
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
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
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


def importtime(statement: str) -> dict:
    """Total and largest cumulative import times (seconds) reported by ``python -X importtime``."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True
    ).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(2)), len(m.group(3))))
    top_level = [r for r in rows if r[2] == min(r[2] for r in rows)]
    heavy = sorted((r for r in rows if "." not in r[0]), key=lambda r: -r[1])[:5]
    return {
        "statement": statement,
        "total_s": round(sum(r[1] for r in top_level) / 1e6, 3),
        "largest_top_level_packages_s": {name: round(us / 1e6, 3) for name, us, _ in heavy},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("AIRSEARCH_QUIET", "1")
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "command_lines": [wall(argv, args.repeats) for argv in LINES],
        "import_now": importtime("import airsearch.cli.main"),
        "import_eager_before": importtime(f"import airsearch.cli.main, {EAGER}"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    m, now, before = result["machine"], result["import_now"], result["import_eager_before"]
    lines = [
        "# Start-up (`benchmarks/bench_startup.py`)",
        "",
        f"{m['cpus']} CPUs, 1-minute load average {m['load_average_1min']} while measuring (the machine is "
        f"shared: the figures are slower than on an idle one), Python {m['python']}.",
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
    ]
    (RESULTS / "startup.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
