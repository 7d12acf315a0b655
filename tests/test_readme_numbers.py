"""Every measured number in the README's tables comes from a file in results/ (a run's tables,
its comparisons and per-seed values, or a benchmark's printed output kept under
results/benchmarks/), and every benchmark output the README quotes is kept there verbatim:
a figure that no file made by the current code backs cannot stay in the README."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "results"
#: Tables that describe settings or files rather than measure (their first header cell).
DESCRIPTIVE = {"file", "command", "name", "setting", "key", "study file", "what", "page", "backbone"}
NUMBER = re.compile(r"[-+−]?\d+\.\d+(?:e[-+]?\d+)?")


def _kept_numbers() -> set[float]:
    """Every number in the results' text files, rounded as a table may print it (0-4 decimals,
    in percent, or in scientific notation)."""
    out: set[float] = set()
    for f in RESULTS.rglob("*"):
        if f.suffix in (".csv", ".md", ".txt", ".json") and f.is_file():
            for tok in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", f.read_text(errors="ignore")):
                x = float(tok)
                out.update(round(x, nd) for nd in range(5))
                out.update(round(100 * x, nd) for nd in range(3))      # shares printed in percent
                out.update(float(f"{x:.{nd}e}") for nd in range(4))     # p-values printed as 2.8e-10
    return out


def _table_numbers(doc: Path):
    """(line number, cell text, number) of every decimal number in the measured tables."""
    lines = doc.read_text().splitlines()
    header = None
    for i, line in enumerate(lines, 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: "):
            continue
        if header[0].lower() in DESCRIPTIVE or "reported" in cells or any("(thesis" in c for c in cells):
            continue
        for cell in cells:
            for tok in NUMBER.findall(cell):
                yield i, cell, float(tok.replace("−", "-").lstrip("+"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_table_number_is_in_a_results_file(doc):
    kept = _kept_numbers()
    missing = [f"{doc.name}:{i} {cell!r}" for i, cell, x in _table_numbers(doc)
               if x not in kept and -x not in kept]
    assert not missing, "numbers with no file in results/ behind them:\n" + "\n".join(missing[:40])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_quoted_benchmark_outputs_are_kept_in_results(doc):
    """A fenced block that starts `$ python benchmarks/X.py ...` quotes X's output: its lines
    must be in results/benchmarks/X.txt."""
    text = doc.read_text()
    for block in re.findall(r"```\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0] if block.strip() else ""
        m = re.match(r"\$ (?:\.venv/bin/)?python benchmarks/(\w+)\.py", first)
        if not m:
            continue
        kept = RESULTS / "benchmarks" / f"{m.group(1)}.txt"
        assert kept.exists(), f"{doc.name} quotes benchmarks/{m.group(1)}.py but {kept} is missing"
        kept_lines = {line.rstrip() for line in kept.read_text().splitlines()}
        quoted = [line.rstrip() for line in block.splitlines()[1:] if line.strip()]
        assert [q for q in quoted if q not in kept_lines] == [], f"{doc.name}: lines not in {kept}"
