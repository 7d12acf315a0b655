"""Static HTML pages of results folders (`cascade html`): `results/<run-id>/report.html` for one
folder, `results/index.html` over all of them.

Why from the folder's files alone: a page must show what the folder holds, its numbers exactly
as its table.md prints them, so it reads the files back rather than recomputing anything (no
store, no training; a folder copied to another machine still renders).  Why static, with an
inline style and no script: the pages open from disk (file://) or any plain web server and
travel with the results they describe.  Why byte-stable (sorted listings, no time of writing):
pages committed beside the results change only when the results do.

Every kind of folder (`cascade run`, `compare`, `ensemble`, `regress`, the analyses) goes
through the same path: the run.json header (what the numbers come from), the folder's Markdown
documents rendered as HTML (table.md or an analysis's README.md first), its figures, the folders
it was built from or used by, the run record and links to every raw file.
"""
from __future__ import annotations

import itertools
import json
import re
from html import escape
from pathlib import Path
from urllib.parse import quote

from cascade.analysis import analysis_of
from cascade.report import run_record
from cascade.store import atomic_write_text

REPORT = "report.html"
INDEX = "index.html"
#: A folder's main document: the run's table, or an analysis's README (its header and tables).
MAIN_DOCS = ("table.md", "README.md")

STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:78em;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em}h3,h4{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .45em;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}.r{text-align:right}
code{background:#f3f3f3;padding:0 .2em}ul.header li{margin:.15em 0}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:36em;border:1px solid #ddd}
.wide{overflow-x:auto}table.doc td{white-space:nowrap}table.doc td:first-child{white-space:normal;min-width:12em}
td code{white-space:nowrap}"""


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _url(path: str) -> str:
    """A relative path as an attribute value: percent-quoted (a `:` in a folder name must not
    read as a URL scheme), then escaped."""
    return escape(quote(path))


def _link(href: str, text: str) -> str:
    return f'<a href="{_url(href)}">{escape(text)}</a>'


# --------------------------------------------------------------------------- Markdown

def inline(text: str) -> str:
    """The inline Markdown the harness writes: `code` and **bold**; everything else escaped."""
    parts = text.split("`")
    return "".join(f"<code>{escape(p)}</code>" if i % 2 else
                   re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escape(p))
                   for i, p in enumerate(parts))


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row; `\\|` is a literal bar inside a cell."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row.strip()[1:-1])]


def _table(rows: list[str]) -> str:
    """A Markdown table (header row, alignment row, body) as an HTML table; cells are the
    document's text unchanged, `---:` columns right-aligned."""
    head, align, *body = [_cells(r) for r in rows]
    cls = [' class="r"' if a.endswith(":") else "" for a in align]
    out = ['<div class="wide"><table class="doc">', "<thead><tr>" + "".join(
        f"<th{c}>{inline(h)}</th>" for c, h in zip(cls, head)) + "</tr></thead>", "<tbody>"]
    out += ["<tr>" + "".join(f"<td{c}>{inline(v)}</td>" for c, v in zip(cls, r)) + "</tr>" for r in body]
    return "\n".join(out + ["</tbody></table></div>"])


def _kind(line: str) -> str:
    if not line.strip():
        return "blank"
    if re.match(r"#+ ", line):
        return "heading"
    if line.startswith("- "):
        return "item"
    return "row" if line.startswith("|") else "text"


def markdown(text: str, shift: int = 0, skip: frozenset[str] = frozenset()) -> str:
    """The Markdown subset of the harness's documents (headings, bullet lists, tables,
    paragraphs) as HTML.  `shift` demotes headings (a document inside a page); lines in `skip`
    are left out (what the page already shows)."""
    lines = [line for line in text.splitlines() if line not in skip]
    out = []
    for kind, group in itertools.groupby(lines, _kind):
        group = list(group)
        if kind == "heading":
            for line in group:
                hashes, title = line.split(" ", 1)
                level = min(len(hashes) + shift, 6)
                out.append(f"<h{level}>{inline(title)}</h{level}>")
        elif kind == "item":
            out.append("<ul>\n" + "\n".join(f"<li>{inline(line[2:])}</li>" for line in group) + "\n</ul>")
        elif kind == "row":
            out.append(_table(group))
        elif kind == "text":
            out.append(f"<p>{inline(chr(10).join(group))}</p>")
    return "\n".join(out)


# --------------------------------------------------------------------------- one folder

def results_folders(results: Path) -> list[Path]:
    return sorted(d for d in Path(results).iterdir() if (d / "run.json").is_file())


def made_by(folder: Path, meta: dict) -> str:
    """The sub-command that wrote the folder, told apart as `cascade report` tells them."""
    if "command" in meta:
        return f"cascade {meta['command']}"
    analysis = analysis_of(folder.name, meta)
    return f"cascade {analysis[1]} {analysis[0]}" if analysis else "cascade run"


def _lead(meta: dict, prefix: str, stop: str) -> str:
    """The index's short form of the first header line that starts with `prefix` (`Target: `,
    `Data: `): what follows the prefix, up to the pattern `stop`."""
    line = next((h[len(prefix):] for h in meta.get("header", []) if h.startswith(prefix)), None)
    return "–" if line is None else inline(re.split(stop, line)[0])


def _words(meta: dict) -> str:
    """The key=value words the folder was made with (a regression's are its command's words)."""
    words = meta.get("settings", meta.get("words"))
    if words is None:                       # compare, ensemble: made from runs, not settings
        return "–"
    return f"<code>{escape(' '.join(words))}</code>" if words else "(the defaults)"


def _folder_link(results: Path, entry: str, up: str) -> str:
    """A folder a run.json names (`results/<run-id>`): a link to its page where it is a results
    folder beside this one, its name as plain text otherwise (moved, renamed, never kept)."""
    name = Path(entry).name
    if (results / name / "run.json").is_file():
        return _link(f"{up}{name}/{REPORT}", name)
    return f"<code>{escape(entry)}</code>"


def _built_from(results: Path, meta: dict, up: str) -> str:
    return ", ".join(_folder_link(results, r, up) for r in meta.get("runs", [])) or "–"


def _used_by(folder: Path) -> list[str]:
    """The folders beside this one whose run.json names it among their runs (compare, ensemble)."""
    return [d.name for d in results_folders(folder.parent)
            if folder.name in {Path(r).name for r in run_record(d).get("runs", [])}]


def _listing(folder: Path, leave_out: str = "") -> list[str]:
    """Every file under `folder` (relative, sorted), hidden temporaries and `leave_out` aside."""
    rel = (p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    return sorted(r.as_posix() for r in rel
                  if not any(s.startswith(".") for s in r.parts) and r.as_posix() != leave_out)


def _pairs(rows: dict) -> str:
    """A two-column table of a run.json mapping (stage keys, environment), in its order."""
    cells = "\n".join(f"<tr><th>{escape(k)}</th><td>{escape(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
                      for k, v in rows.items())
    return f"<table>\n{cells}\n</table>"


def _figures(folder: Path, meta: dict) -> list[str]:
    """Each PNG embedded, in run.json's order, then any it does not list; its name is the
    caption, with the PDF beside it where there is one."""
    pngs = [f for f in _listing(folder) if f.endswith(".png")]
    listed = [f for f in meta.get("figures", []) if f in pngs]
    out = []
    for f in listed + [f for f in pngs if f not in listed]:
        pdf = f[:-4] + ".pdf"
        extra = " · " + _link(pdf, "PDF") if (folder / pdf).is_file() else ""
        out.append(f'<figure><a href="{_url(f)}"><img src="{_url(f)}" alt="{escape(f)}"></a>'
                   f"<figcaption>{escape(Path(f).name)}{extra}</figcaption></figure>")
    return out


def report(folder: Path) -> str:
    """The page of one results folder (see the module's docstring for what it holds)."""
    folder = Path(folder)
    meta = run_record(folder)
    header = meta.get("header", [])
    main_doc = next((folder / n for n in MAIN_DOCS if (folder / n).is_file()), None)
    docs = sorted(p for p in folder.glob("*.md") if p != main_doc)
    main = main_doc.read_text() if main_doc else ""
    first = main.split("\n", 1)[0]
    title = first[2:] if first.startswith("# ") else meta.get("title", folder.name)
    about = [("made by", f"<code>{escape(made_by(folder, meta))}</code>"), ("settings", _words(meta)),
             ("built from", _built_from(folder.parent, meta, "../")),
             ("used by", ", ".join(_link(f"../{n}/{REPORT}", n) for n in _used_by(folder)) or "–")]
    body = [f"<h1>{inline(title)}</h1>", "<table>", *(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in about),
            "</table>", "<h2>What the numbers come from</h2>", '<ul class="header">',
            *(f"<li>{inline(h)}</li>" for h in header), "</ul>",
            markdown(main, skip=frozenset([first, *(f"- {h}" for h in header)]))]
    body += [markdown(d.read_text(), shift=1) for d in docs]
    figures = _figures(folder, meta)
    body += ["<h2>Figures</h2>", *figures] if figures else []
    body += ["<h2>Run record (run.json)</h2>"]
    body += ["<h3>Stage keys</h3>", _pairs(meta["stages"])] if meta.get("stages") else []
    body += ["<h3>Environment</h3>", _pairs(meta.get("environment", {})), "<h2>Files</h2>", "<ul>",
             *(f"<li>{_link(f, f)}</li>" for f in _listing(folder, REPORT)), "</ul>"]
    return _page(title, body)


# --------------------------------------------------------------------------- all folders

def index(results: Path) -> str:
    """One row per results folder (what made it, its target, whether its data are synthetic,
    its settings or the runs it was built from, the commit), then the files of every other
    folder (benchmark outputs, audits)."""
    results = Path(results)
    rows = []
    for folder in results_folders(results):
        meta = run_record(folder)
        env = meta.get("environment", {})
        cells = [_link(f"{folder.name}/{REPORT}", folder.name), f"<code>{escape(made_by(folder, meta))}</code>",
                 _lead(meta, "Target: ", r"[;,] "), _lead(meta, "Data: ", r" \(|[:;]"), _words(meta),
                 _built_from(results, meta, ""),
                 escape(env.get("commit", "–")[:12] + (" (dirty)" if env.get("dirty") else ""))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("folder", "made by", "target", "data", "settings", "built from", "commit"))
    body = ["<h1>Results</h1>", f"<p>{len(rows)} results folders; each links to its report.</p>",
            f'<div class="wide"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>', *rows, "</tbody></table></div>"]
    for other in sorted(d for d in results.iterdir() if d.is_dir() and not (d / "run.json").is_file()
                        and not d.name.startswith(".")):
        body += [f"<h2>{escape(other.name)}/</h2>", "<ul>",
                 *(f"<li>{_link(f'{other.name}/{f}', f)}</li>" for f in _listing(other)), "</ul>"]
    return _page("Results", body)


def write(folders: list[Path]) -> list[Path]:
    """report.html in each folder, every one checked before any is written."""
    for folder in folders:
        run_record(folder)
    written = [Path(folder) / REPORT for folder in folders]
    for folder, out in zip(folders, written):
        atomic_write_text(out, report(folder))
    return written


def write_all(results: Path) -> list[Path]:
    """report.html in every results folder under `results`, then `results/index.html`."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: no such folder (the results folder to index)")
    written = write(results_folders(results))
    atomic_write_text(results / INDEX, index(results))
    return written + [results / INDEX]
