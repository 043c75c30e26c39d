"""The equation map and the § citations point somewhere real.

* Every ``module.function`` in ``docs/equations.md``'s map (and every dotted ``airsearch.…`` name in
  ``docs/architecture.md``) imports, and every ``tests/…py::test_name`` there is a test that exists.
* Every product module is listed in ``docs/architecture.md``.
* Every ``methods.md §N`` / ``equations.md §N`` cited in a docstring, comment or doc is a section of
  that file, and a module named in a ``docs/methods.md`` heading cites that heading's section.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PRODUCT = ("airsearch", "indexers", "trainers", "cli")
CITING = (*PRODUCT, "tests", "benchmarks")
CITATION = re.compile(
    r"(?P<file>methods|equations)\.md`?\s*§\s*(?P<first>\d+[a-z]?)(?P<more>(?:\s*(?:,|-|–|and)\s*§\s*\d+[a-z]?)*)"
)
MAP_ROW = re.compile(r"^\|(?!---)(.*)\|\s*$")


def sections(doc: str) -> dict[str, str]:
    """``{section number: heading line}`` of a doc (``## 3b. RepSim ...`` -> ``"3b"``)."""
    out = {}
    for line in (DOCS / doc).read_text().splitlines():
        m = re.match(r"^##\s+(\d+[a-z]?)\.\s", line)
        if m:
            out[m.group(1)] = line
    return out


def citations(text: str) -> list[tuple[str, str]]:
    """``(doc, section)`` of every citation in ``text``, ranges and lists expanded to their ends."""
    out = []
    for m in CITATION.finditer(text):
        doc = f"{m.group('file')}.md"
        out.append((doc, m.group("first")))
        out += [(doc, n) for n in re.findall(r"§\s*(\d+[a-z]?)", m.group("more"))]
    return out


def resolve(dotted: str) -> object:
    """The object a dotted name names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def map_rows() -> list[list[str]]:
    text = (DOCS / "equations.md").read_text()
    block = text.split("## Equation map", 1)[1].split("\n## ", 1)[0]
    rows = [_cells(line) for line in block.splitlines() if MAP_ROW.match(line)]
    return rows[1:]  # the header row


def test_equation_map_has_a_row_per_method_and_paper() -> None:
    rows = map_rows()
    assert all(len(r) == 5 for r in rows), [r for r in rows if len(r) != 5]
    papers = " ".join(r[0] for r in rows)
    for paper in ("AirRep", "DDA", "HAIF", "Daunce", "TracIn", "RepSim", "Grosse", "Cormack"):
        assert paper in papers
    for eq in ("Eq. 7", "Eq. 8", "Eq. 9", "Eq. 6", "Eq. 10-11", "Eq. 12", "Eq. 23", "Eq. 5", "Eq. 21"):
        assert any(r[1].startswith(eq) for r in rows), eq


@pytest.mark.parametrize("row", map_rows(), ids=lambda r: f"{r[0]} {r[1]}")
def test_equation_map_names_real_code_and_real_tests(row: list[str]) -> None:
    (code,) = re.findall(r"`([\w.]+)`", row[3])
    assert code.startswith("airsearch.")
    assert callable(resolve(code)), code
    tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row[4])
    assert tests, row
    for path, name in tests:
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), f"{path}::{name}"


def test_architecture_names_real_modules_and_every_module() -> None:
    text = (DOCS / "architecture.md").read_text()
    for dotted in set(re.findall(r"`(airsearch(?:\.\w+)+)`", text)):
        resolve(dotted)
    listed = set(re.findall(r"`([\w/]*?(\w+\.py))`", text))
    names = {name for _, name in listed}
    missing = [
        str(p.relative_to(ROOT))
        for folder in PRODUCT
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name != "__init__.py" and p.name not in names
    ]
    assert missing == []


def _cited_files() -> list[Path]:
    files = [p for folder in CITING for p in sorted((ROOT / folder).rglob("*.py")) if "work" not in p.parts]
    return files + sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]


def test_every_cited_section_exists() -> None:
    known = {doc: sections(doc) for doc in ("methods.md", "equations.md")}
    bad = []
    for path in _cited_files():
        for doc, number in citations(path.read_text()):
            if number not in known[doc]:
                bad.append(f"{path.relative_to(ROOT)} cites {doc} §{number}")
    for doc in known:  # a doc's own bare ``§N`` (a line naming methods.md cites that file)
        own = [line for line in (DOCS / doc).read_text().splitlines() if "methods.md" not in line]
        for number in re.findall(r"(?<![\w.`])§\s*(\d+[a-z]?)(?![.\d])", "\n".join(own)):
            if number not in known[doc]:
                bad.append(f"docs/{doc} cites its own §{number}")
    assert bad == []


def test_modules_cite_the_methods_section_that_names_them() -> None:
    product = [p for folder in PRODUCT for p in (ROOT / folder).rglob("*.py")]
    named: dict[Path, set[str]] = {}
    for number, heading in sections("methods.md").items():
        for ref in re.findall(r"`([\w/]+\.py)", heading):
            hits = [p for p in product if str(p.relative_to(ROOT)).endswith(ref) or p.name == ref]
            hits = [p for p in hits if str(p.relative_to(ROOT)).endswith(ref)] or hits
            assert len(hits) >= 1, ref
            for p in hits if "/" in ref else hits[:1]:
                named.setdefault(p, set()).add(number)
    assert len(named) >= 8  # tracin, dda, repsim, haif, features, daunce (x2), kfac, precondition, ...
    wrong = []
    for path, numbers in sorted(named.items()):
        cited = {n for doc, n in citations(path.read_text()) if doc == "methods.md"}
        if not cited & numbers:
            wrong.append(f"{path.relative_to(ROOT)} cites methods.md {sorted(cited)}, not {sorted(numbers)}")
    assert wrong == []


def test_a_wrong_citation_is_detected() -> None:
    assert citations("DDA (methods.md §2; Eqs. 6, 9-12) and `docs/methods.md` §0a, §3b-§5") == [
        ("methods.md", "2"),
        ("methods.md", "0a"),
        ("methods.md", "3b"),
        ("methods.md", "5"),
    ]
    assert "2" in sections("methods.md") and "TracIn" in sections("methods.md")["2"]
