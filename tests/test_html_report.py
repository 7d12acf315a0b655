"""`cascade html`: the static pages of copies of committed results folders of each kind, read
back with the stdlib's HTML parser as a browser reads them: every image and local link resolves,
the tables carry table.csv's and comparisons.csv's numbers as table.md prints them, every header
line is there, a compare folder links the runs it compared (and a run the compare that used
it), the index lists every folder and the benchmark outputs, a rebuild writes the same bytes and
a path that is no results folder is refused by name before anything is written."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from cascade.cli import main

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: A three-seed run, a compare of it with one run that is kept and one that is not, a
#: regression, an analysis with extra documents, an ensemble whose members are not kept, the
#: benchmark outputs.
KEPT = ["fgnet-demo-eaaaf702", "fgnet-demo-fb06e05d", "compare-b86dfef3", "regress-fgnet-demo-ridge-d1d97f7f",
        "subjects-fgnet-demo-b069ff66", "ensemble-043696ca", "benchmarks"]


class Page(HTMLParser):
    """What a page shows: image sources, link targets, tables (rows of cell texts), list items."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.path, self.srcs, self.hrefs, self.tables, self.items = path, [], [], [], []
        self._text: list[str] | None = None
        self.feed(path.read_text())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        elif tag == "a":
            self.hrefs.append(a["href"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th", "li"):
            self._text = []

    def handle_endtag(self, tag):
        if tag in ("td", "th", "li"):
            (self.tables[-1][-1] if tag != "li" else self.items).append("".join(self._text))
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def table(self, first_header: str) -> tuple[list[str], list[list[str]]]:
        """The header and body rows of the table whose first header cell is `first_header`."""
        return next((t[0], t[1:]) for t in self.tables if t and t[0][0] == first_header)


def _copy(to: Path) -> Path:
    """Copies of the KEPT folders under `to/results`, without any page already built there."""
    results = to / "results"
    for name in KEPT:
        shutil.copytree(RESULTS / name, results / name, ignore=shutil.ignore_patterns("report.html"))
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    results = _copy(tmp_path_factory.mktemp("html"))
    assert main(["html", "--results", str(results)]) == 0
    return results


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_every_image_and_local_link_resolves_and_every_figure_is_shown(built):
    pages = sorted(built.glob("*/report.html")) + [built / "index.html"]
    assert len(pages) == len(KEPT)                       # benchmarks/ has no page; the index has
    for path in pages:
        page = Page(path)
        local = [h for h in page.srcs + page.hrefs if not urlparse(h).scheme]
        assert local and not [h for h in local if not (path.parent / unquote(h)).is_file()], path
        pngs = {p.relative_to(path.parent).as_posix() for p in path.parent.glob("figures/*.png")}
        assert pngs <= set(page.srcs), path


@pytest.mark.parametrize("folder", ["fgnet-demo-eaaaf702", "regress-fgnet-demo-ridge-d1d97f7f", "compare-b86dfef3"])
def test_the_table_carries_table_csv_numbers_as_table_md_prints_them(built, folder):
    """Each configuration's MAE (± its sd over seeds where there are several) in its own row, in
    table.csv's order, to the two decimals of table.md."""
    rows = _rows(built / folder / "table.csv")
    first = next(iter(rows[0]))
    head, body = Page(built / folder / "report.html").table(first)
    mae = head.index("MAE")
    assert len(body) >= len(rows)                   # table.md adds the thesis's reported rows
    for row, cells in zip(rows, body):
        sd = row.get("MAE sd (seeds)")
        assert cells[0] == row[first]
        assert cells[mae] == f"{float(row['MAE']):.2f}" + (f" ± {float(sd):.2f}" if sd else "")


@pytest.mark.parametrize("folder", ["fgnet-demo-eaaaf702", "compare-b86dfef3"])
def test_the_paired_comparisons_carry_comparisons_csv(built, folder):
    rows = _rows(built / folder / "comparisons.csv")
    head, body = next((t[0], t[1:]) for t in Page(built / folder / "report.html").tables if "vs" in t[0])
    delta = head.index("Δ MAE (years)")
    assert [c[:2] for c in body] == [[r["configuration"], r["vs"]] for r in rows]
    for row, cells in zip(rows, body):
        assert abs(float(cells[delta]) - float(row["Δ MAE"])) <= 0.005 + 1e-12


@pytest.mark.parametrize("folder", [f for f in KEPT if f != "benchmarks"])
def test_every_header_line_is_shown(built, folder):
    meta = json.loads((built / folder / "run.json").read_text())
    items = set(Page(built / folder / "report.html").items)
    assert meta["header"] and [h for h in meta["header"] if h.replace("**", "").replace("`", "") not in items] == []


def test_a_compare_links_the_runs_it_compared_and_a_run_the_compare_that_used_it(built):
    page = Page(built / "compare-b86dfef3" / "report.html")
    assert "../fgnet-demo-fb06e05d/report.html" in page.hrefs
    # the other run compared is not kept here: named, not linked
    assert not [h for h in page.hrefs if "exclude-overlap" in h]
    assert "results/exclude-overlap-fgnet-demo-a5cdd20e" in (built / "compare-b86dfef3" / "report.html").read_text()
    assert "../compare-b86dfef3/report.html" in Page(built / "fgnet-demo-fb06e05d" / "report.html").hrefs


def test_the_index_lists_every_folder_and_the_benchmark_outputs(built):
    page = Page(built / "index.html")
    head, body = page.table("folder")
    folders = sorted(f for f in KEPT if f != "benchmarks")
    assert [r[0] for r in body] == folders
    assert {f"{f}/report.html" for f in folders} <= set(page.hrefs)
    assert {f"benchmarks/{p.name}" for p in (built / "benchmarks").glob("*.txt")} <= set(page.hrefs)
    by_folder = {r[0]: dict(zip(head, r)) for r in body}
    assert by_folder["fgnet-demo-eaaaf702"]["data"] == "synthetic data"
    assert by_folder["subjects-fgnet-demo-b069ff66"]["made by"] == "cascade analyse subjects"
    assert by_folder["compare-b86dfef3"]["built from"] == \
        "fgnet-demo-fb06e05d, results/exclude-overlap-fgnet-demo-a5cdd20e"


def test_a_rebuild_writes_the_same_bytes(built, tmp_path, capsys):
    """Over its own pages (a page is no file of its folder) and in another place (no absolute
    path, no time of writing)."""
    again = _copy(tmp_path)
    for _ in range(2):
        assert main(["html", "--results", str(again)]) == 0
        written = capsys.readouterr().out.splitlines()
        assert len(written) == len(KEPT) and all(line.startswith(f"written {again}") for line in written)
        for page in sorted(built.rglob("*.html")):
            assert (again / page.relative_to(built)).read_bytes() == page.read_bytes(), page


def test_a_path_that_is_no_results_folder_is_refused_by_name_before_any_page(tmp_path, capsys):
    results = _copy(tmp_path)
    good, bad = results / "fgnet-demo-eaaaf702", results / "benchmarks"
    assert main(["html", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a results folder (no run.json" in err
    assert not (good / "report.html").exists()
    assert main(["html", "--results", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    assert main(["html", str(good)]) == 0 and (good / "report.html").is_file()


def test_a_browser_renders_the_table(built):
    """Where chromium is installed: its rendered DOM of a page holds the table with its numbers."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH")
    page = built / "fgnet-demo-eaaaf702" / "report.html"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "<table" in dom and "<td>pretrained → imdb → agedb</td><td>full</td><td>5.86 ± 0.23</td>" in dom
    assert '<img src="figures/fold_mae.png"' in dom


def test_the_committed_pages_are_the_ones_the_committed_folders_make():
    """A results folder added or remade without `cascade html` (the last step of
    benchmarks/regenerate_results.sh) leaves its page or the index stale: caught here."""
    from cascade.report import html

    expected = {RESULTS / "index.html": html.index(RESULTS)}
    expected.update({d / "report.html": html.report(d) for d in html.results_folders(RESULTS)})
    stale = [str(f.relative_to(RESULTS)) for f, text in expected.items() if not f.exists() or f.read_text() != text]
    assert not stale, f"stale or missing pages (run `cascade html`): {stale}"
