"""Start-up: ``--help``, ``--version`` and option errors answer without importing the heavy libraries
(torch, transformers, LanceDB ...), which load only inside a command that needs them; ``-q`` keeps the
libraries' loading bars and warnings out of the output. (The time it takes is measured, not asserted:
``benchmarks/results/startup.md``.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "transformers", "sentence_transformers", "lancedb", "lance", "pyarrow", "numpy", "datasets")

PROBE = """
import json, sys
from click.testing import CliRunner
from airsearch.cli.main import app
codes = {}
for argv in ARGVS:
    codes[" ".join(argv)] = CliRunner().invoke(app, argv).exit_code
print(json.dumps({"codes": codes, "heavy": sorted(m for m in HEAVY if m in sys.modules)}))
"""

ARGVS = [
    ["--help"],
    ["--version"],
    ["--bogus"],
    ["nosuch"],
    ["eval", "--help"],
    ["labels", "--help"],
    ["lm", "--help"],
    *[
        [cmd, "--help"]
        for cmd in (
            "index",
            "query",
            "select",
            "info",
            "delete",
            "restore",
            "explain",
            "serve",
            "attribute",
            "train",
        )
    ],
    ["index", "--bogus"],
    ["query", "--k", "notanumber"],
    ["labels", "generate", "--help"],
    ["lm", "build-tiny", "--help"],
]


def test_help_version_and_option_errors_import_no_heavy_library():
    code = f"ARGVS = {ARGVS!r}\nHEAVY = {HEAVY!r}\n" + PROBE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["heavy"] == [], got
    assert all(c == 0 for a, c in got["codes"].items() if "--help" in a or "--version" in a), got
    assert got["codes"]["--bogus"] == got["codes"]["index --bogus"] == got["codes"]["nosuch"] == 2


def test_quiet_hides_loading_bars_and_library_warnings(tmp_path, corpus_file, tiny_encoder_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("AIRSEARCH_QUIET", "TRANSFORMERS_VERBOSITY")}
    argv = [
        sys.executable,
        "-m",
        "airsearch.cli.main",
        "-q",
        "index",
        str(corpus_file),
        "--db",
        str(tmp_path / "db"),
    ]
    res = subprocess.run([*argv, "--encoder", str(tiny_encoder_dir)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr  # no "Loading weights" bar, no plan, no warnings
    assert res.stdout.startswith("create: table 'corpus'")


def test_lazy_package_exports_stay_the_exported_objects():
    """``airsearch.lm`` re-exports lazily; its ``finetune`` stays the function even once the
    ``airsearch.lm.finetune`` submodule is imported (which binds the package attribute to the module)."""
    import airsearch.lm.finetune  # noqa: F401
    from airsearch.lm import finetune, load_lm

    assert callable(finetune) and finetune.__module__ == "airsearch.lm.finetune"
    assert load_lm.__module__ == "airsearch.lm.model"
