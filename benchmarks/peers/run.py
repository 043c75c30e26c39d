"""Run airsearch and every installed peer on the same LM, data and loss; write fidelity and speed tables.

    bash benchmarks/peers/setup_envs.sh                 # once: one virtualenv per peer
    python benchmarks/peers/run.py [--reps 3] [--peers kronfluence,dattri,captum] [--smollm2]

Each rep runs every tool once, in turn (airsearch, peer 1, peer 2, ..., then again), each in its own
process and environment, so slow drifts of a shared machine hit every tool alike (alternating A/B);
speed is the median over reps of each operation's seconds. Fidelity compares the first rep's score
matrices, kind by kind, with airsearch's: Pearson, Spearman and the maximum relative error
``max |s_peer - s_airsearch| / max |s_airsearch|``. Results: ``benchmarks/results/peers/``
(``results.json``, ``README.md``, ``speed.png``); working files: ``benchmarks/work/peers/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from report import write_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "benchmarks" / "work" / "peers"
RESULTS = ROOT / "benchmarks" / "results" / "peers"
PEERS = ("kronfluence", "dattri", "captum", "traker", "bergson")


def python_of(tool: str) -> str:
    return sys.executable if tool == "airsearch" else str(WORK / tool / "venv" / "bin" / "python")


def available(peers: list[str]) -> list[str]:
    return [p for p in peers if (HERE / f"run_{p}.py").exists() and Path(python_of(p)).exists()]


def run_side(tool: str, data: Path, out: Path, ops: str, threads: int, timeout: int) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "AIRSEARCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    env["TRANSFORMERS_OFFLINE"] = "1"
    cmd = [
        python_of(tool),
        str(HERE / f"run_{tool}.py"),
        "--data",
        str(data),
        "--out",
        str(out),
        "--ops",
        ops,
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd + ["--threads", str(threads)], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"  {tool}: timed out after {timeout} s", flush=True)
        return None
    if proc.returncode != 0:
        print(f"  {tool}: failed\n{proc.stderr[-3000:]}", flush=True)
        return None
    print(f"  {tool}: {time.perf_counter() - started:.1f} s", flush=True)
    return json.loads((out / "run.json").read_text())


def bench(
    name: str,
    data: Path,
    tools: list[str],
    ops: str,
    reps: int,
    threads: int,
    timeout: int,
    once: tuple = (),
    first_rep: int = 0,
) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for rep in range(first_rep, first_rep + reps):
        print(f"[{name}] rep {rep + 1}/{first_rep + reps}", flush=True)
        order = tools if rep % 2 == 0 else [tools[0], *reversed(tools[1:])]
        for tool in order:
            if rep > 0 and tool in once:
                continue
            got = run_side(tool, data, WORK / "runs" / name / tool / f"rep{rep}", ops, threads, timeout)
            if got is not None:
                runs[tool].append(got)
    return {
        "data": str(data.relative_to(ROOT)),
        "meta": json.loads((data / "meta.json").read_text()),
        "runs": runs,
    }


def prepare(out: Path, *extra: str) -> Path:
    if not (out / "meta.json").exists():
        subprocess.run([sys.executable, str(HERE / "prepare.py"), "--out", str(out), *extra], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per tool run")
    parser.add_argument(
        "--smollm2", action="store_true", help="also time per-example grad-dot on SmolLM2-135M"
    )
    parser.add_argument("--smollm2-peers", default="kronfluence")
    parser.add_argument("--once", default="traker", help="peers run in the first rep only (slow ones)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the tables from the runs on disk")
    parser.add_argument(
        "--first-rep", type=int, default=0, help="number of the first rep (add reps to earlier ones)"
    )
    parser.add_argument("--skip-tiny", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        report_all(args.threads)
        return
    peers = available(args.peers.split(","))
    print("peers installed:", peers or "none (run setup_envs.sh)", flush=True)
    tiny = prepare(WORK / "data-tiny")
    if not args.skip_tiny:
        tools = ["airsearch", *peers]
        once = tuple(args.once.split(","))
        ops = "graddot,gradcos,kfac,ekfac"
        bench("tiny", tiny, tools, ops, args.reps, args.threads, args.timeout, once, args.first_rep)
    if args.smollm2:
        smol = prepare(
            WORK / "data-smollm2",
            "--model",
            "smollm2",
            "--n-train",
            "4",
            "--n-test",
            "2",
            "--max-length",
            "64",
        )
        smol_peers = [p for p in args.smollm2_peers.split(",") if p in peers]
        reps = max(2, args.reps - 1)
        bench(
            "smollm2",
            smol,
            ["airsearch", *smol_peers],
            "graddot",
            reps,
            args.threads,
            900,
            (),
            args.first_rep,
        )
    report_all(args.threads)


def report_all(threads: int) -> None:
    """Tables from every run on disk (``benchmarks/work/peers/runs/<benchmark>/<tool>/rep<i>``)."""
    benchmarks = {}
    for name in ("tiny", "smollm2"):
        data = WORK / f"data-{name}"
        if (WORK / "runs" / name).is_dir() and (data / "meta.json").exists():
            benchmarks[name] = {
                "data": str(data.relative_to(ROOT)),
                "meta": json.loads((data / "meta.json").read_text()),
            }
    write_report({"machine": machine(), "threads": threads, "benchmarks": benchmarks}, WORK / "runs", RESULTS)


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), Python {platform.python_version()}"


if __name__ == "__main__":
    main()
