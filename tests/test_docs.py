"""The documents stay true to the repository: every results table equals what ``scripts/render_results.py``
renders from the committed JSON now, every relative link resolves (to a file, and to a heading where it
names one), and the README stays a front door (about 200 lines)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "render_results.py"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```$", re.DOTALL | re.MULTILINE)


def _renderer():
    spec = importlib.util.spec_from_file_location("render_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_rendered_results_match_the_committed_json() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_catches_a_figure_typed_over_and_a_region_of_no_known_name() -> None:
    render = _renderer()
    readme = (ROOT / "README.md").read_text()
    names = [m.group(2) for m in render.REGION.finditer(readme)]
    assert "converged-headline" in names and render.stale_regions(readme, "README.md") == []
    start = readme.index("<!-- results:converged-headline -->")
    row = readme.index("| AirRep, retraining labels (", start)
    cell = readme.index("[", row)
    edited = readme[: cell + 1] + "9" + readme[cell + 1 :]  # one interval bound typed over
    assert render.stale_regions(edited, "README.md") == ["converged-headline"]
    unknown = "<!-- results:no-such-table -->\n<!-- /results:no-such-table -->\n"
    try:
        render.render(unknown, 0, "x.md")
    except SystemExit as e:
        assert "unknown results region 'no-such-table'" in str(e)
    else:
        raise AssertionError("an unknown region name was rendered")


def test_every_rendered_table_names_the_files_it_came_from() -> None:
    render = _renderer()
    for doc in render.DOCUMENTS:
        text = (ROOT / doc).read_text()
        regions = list(render.REGION.finditer(text))
        assert regions, doc
        for m in regions:
            assert "Rendered from [`benchmarks/results/" in m.group(3), f"{doc}: {m.group(2)}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    text = FENCED.sub("", path.read_text())
    heads = re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in markdown_files():
        for target in LINK.findall(FENCED.sub("", doc.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 230
    # the exact command CI runs (.ci/run)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme
    for page in sorted((ROOT / "docs" / "usage").glob("*.md")):
        assert f"(docs/usage/{page.name})" in readme, f"the README links every manual page: {page.name}"
    for job in ("**Index**", "**Query**", "**Attribute**", "**Train**", "**Serve**"):
        assert job in readme
