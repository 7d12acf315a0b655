"""The run table as a booktabs LaTeX table, for pasting into a paper or thesis.

Why by hand rather than ``Styler.to_latex``: the table's strings carry characters pandas does
not escape into math (``pretrained → imdb ⇒ adience``, ``61.41 ± 4.37``, ``Σ age·p``), and the
header lines carry Markdown (``**synthetic data**``, ```lopo```) that must become
``\\textbf`` / ``\\texttt`` instead of literal asterisks.  One small escaper that maps every
special character — and then the output is plain ASCII that compiles under pdflatex with only
``\\usepackage{booktabs}`` — is easier to trust than a chain of pandas options.
"""
from __future__ import annotations

import math
import re
import unicodedata
from numbers import Integral, Real

import pandas as pd

#: LaTeX's ten special characters.  Backslash first in meaning: it is replaced by a macro that
#: itself contains braces, so escaping is done in one pass over characters, never by chained
#: ``str.replace``.
_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}

#: Non-ASCII symbols that occur in run tables, headers and literature rows.
_SYMBOLS = {
    "→": r"$\rightarrow$", "⇒": r"$\Rightarrow$", "←": r"$\leftarrow$", "±": r"$\pm$",
    "Σ": r"$\Sigma$", "·": r"$\cdot$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$",
    "≈": r"$\approx$", "²": r"$^{2}$", "°": r"$^{\circ}$", "μ": r"$\mu$", "α": r"$\alpha$",
    "−": r"$-$", "–": "--", "—": "---", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``",
    "”": "''", "\u00a0": "~", "ß": r"\ss{}", "ø": r"\o{}", "Ø": r"\O{}", "æ": r"\ae{}",
    "å": r"\aa{}", "ł": r"\l{}", "ı": r"\i{}",
}

#: Combining accents → LaTeX accent commands, for letters like é, ö, ñ, í (via NFD).
_ACCENTS = {
    "\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0308": '"',
    "\u030a": "r", "\u030c": "v", "\u0327": "c", "\u0306": "u", "\u030b": "H",
}

_MARKDOWN = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")
_LABEL_OK = re.compile(r"^[A-Za-z0-9:._\-/]+$")


def _char(c: str) -> str:
    if c in _SPECIAL:
        return _SPECIAL[c]
    if c in _SYMBOLS:
        return _SYMBOLS[c]
    if c.isascii():
        return c
    base, *marks = unicodedata.normalize("NFD", c)
    if base.isascii() and marks and all(m in _ACCENTS for m in marks):
        out = "\\i" if base == "i" else base       # dotless i under an accent, as LaTeX wants
        for m in marks:
            cmd = _ACCENTS[m]
            out = f"\\{cmd}{{{out}}}"
        return out
    # Anything else stays as UTF-8 (LaTeX ≥ 2018 reads UTF-8 input by default); no silent loss.
    return c


def escape(text: str) -> str:
    """Escape plain text for LaTeX: the ten specials, arrows/±/Σ as math, accented letters as
    accent commands (``Rodríguez`` → ``Rodr\\'{\\i}guez``)."""
    return "".join(_char(c) for c in str(text))


def markdown(text: str) -> str:
    """Escape text that may carry the run header's Markdown: ``**x**`` → ``\\textbf{x}``,
    ```x``` → ``\\texttt{x}``; everything else as :func:`escape`."""
    out, pos = [], 0
    for m in _MARKDOWN.finditer(text):
        out.append(escape(text[pos:m.start()]))
        bold, code = m.groups()
        out.append(rf"\textbf{{{escape(bold)}}}" if bold is not None else rf"\texttt{{{escape(code)}}}")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def cell(value, decimals: int = 2) -> str:
    """One table cell: floats with ``decimals`` places, NaN/None as an en dash, ints as ints,
    strings escaped (so ``"61.41 ± 4.37"`` keeps its own formatting)."""
    if value is None or (isinstance(value, Real) and not isinstance(value, Integral)
                         and math.isnan(float(value))):
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.{decimals}f}"
    return escape(value)


def _finite(v) -> bool:
    return isinstance(v, Real) and math.isfinite(float(v))


def _is_count(series: pd.Series) -> bool:
    """A float column holding only whole numbers is a count that became float when a row
    without it (NaN) was appended — e.g. ``images`` after concatenating literature rows — and
    is printed as integers, not ``1002.00``."""
    if not pd.api.types.is_float_dtype(series):
        return False
    v = series.dropna().to_numpy()
    return v.size > 0 and bool((v == v.round()).all())


def _align(series: pd.Series) -> str:
    """Right-align numeric columns (so decimals line up), left-align text."""
    return "r" if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) else "l"


def to_latex(table: pd.DataFrame, header: list[str], caption: str, label: str,
             decimals: int = 2) -> str:
    """A complete ``table`` float: booktabs rules, one tabular column per DataFrame column,
    numbers to ``decimals`` places, and the run header (data version, synthetic marker,
    decision rule, seed, cleaning counts) as a footnote-sized note under the tabular — a number
    pasted without those lines cannot be compared with anything.  A ``status`` column, if
    present (measured vs. reported literature rows), gets a ``\\midrule`` where it changes.
    Needs ``\\usepackage{booktabs}``."""
    if not _LABEL_OK.match(label):
        raise ValueError(f"label {label!r} may only contain letters, digits and : . _ - /")
    cols = list(table.columns)
    spec = "".join(_align(table[c]) for c in cols)
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{markdown(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(escape(c) for c in cols) + r" \\", r"\midrule"]
    counts = [_is_count(table[c]) for c in cols]
    status = table["status"].tolist() if "status" in cols else [None] * len(table)
    for i, row in enumerate(table.itertuples(index=False)):
        if i and status[i] != status[i - 1]:
            lines.append(r"\midrule")
        cells = [cell(int(v) if is_count and _finite(v) else v, decimals)
                 for v, is_count in zip(row, counts)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if header:
        lines += [r"\par\medskip", r"\begin{minipage}{\linewidth}\footnotesize",
                  " \\\\\n".join(markdown(h) for h in header), r"\end{minipage}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
