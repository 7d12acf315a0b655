"""Report outputs: figures (PNG + PDF, synthetic marker, metrics reuse), LaTeX escaping and
shape, and the literature baselines transcribed from the thesis (Tables 2-4)."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cascade import metrics as M
from cascade.report import figures as F
from cascade.report import latex as L
from cascade.report import literature

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ADIENCE = {"lo": [0, 4, 8, 15, 25, 38, 48, 60], "hi": [2, 6, 12, 20, 32, 43, 53, 100]}


# --------------------------------------------------------------------------- synthetic inputs

def _age_preds(seed: int, noise: float, n_folds: int = 12, per_fold: int = 8) -> pd.DataFrame:
    """FG-NET-shaped predictions: exact ages, folds "1".."12" (natural order ≠ string order)."""
    rng = np.random.default_rng(seed)
    n = n_folds * per_fold
    true = rng.integers(0, 70, n).astype(float)
    return pd.DataFrame({
        "fold": np.repeat([str(i) for i in range(1, n_folds + 1)], per_fold),
        "subject": np.repeat([f"{i:03d}" for i in range(1, n_folds + 1)], per_fold),
        "true_class": true.astype(int), "true_value": true,
        "pred_expected": np.clip(true + rng.normal(0, noise, n), 0, 69)})


def _group_preds(seed: int = 3, n: int = 200) -> pd.DataFrame:
    """Adience-shaped predictions over 8 groups; group 7 (60-100) never occurs as truth."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 7, n)
    pred = np.clip(true + rng.integers(-1, 2, n), 0, 7)
    mid = np.array([(lo + hi) / 2 for lo, hi in zip(ADIENCE["lo"], ADIENCE["hi"])])
    return pd.DataFrame({"fold": rng.integers(0, 5, n).astype(str), "true_class": true,
                         "pred_class": pred, "true_value": mid[true], "pred_expected": mid[pred]})


@pytest.fixture(scope="module")
def preds():
    return {"pretrained": _age_preds(0, 8.0), "pretrained → imdb → agedb": _age_preds(0, 3.0)}


def _check_files(out, stem: Path) -> None:
    assert isinstance(out, list) and [Path(p) for p in out] == [stem.with_suffix(".png"),
                                                                  stem.with_suffix(".pdf")]
    png, pdf = (Path(p).read_bytes() for p in out)
    assert len(png) > 1000 and png.startswith(PNG_SIGNATURE)
    assert len(pdf) > 1000 and pdf.startswith(b"%PDF")
    assert not [p for p in stem.parent.iterdir() if ".tmp" in p.name], "temp files left behind"


def _texts(fig) -> str:
    """Every title on the figure (suptitle + axes titles)."""
    return " | ".join([fig.get_suptitle()] + [ax.get_title() for ax in fig.axes])


# --------------------------------------------------------------------------- figures

def _all_figures(preds, folder: Path, synthetic: bool) -> dict:
    g = _group_preds()
    return {
        "fold_mae": F.fold_mae(preds, folder / "fold_mae", synthetic=synthetic,
                               baselines={"[47] 2.39": 2.39}),
        "error_vs_age": F.error_vs_age(preds, folder / "error_vs_age", synthetic=synthetic),
        "cumulative_score": F.cumulative_score(preds, folder / "cs", synthetic=synthetic),
        "confusion": F.confusion(g, ADIENCE, folder / "confusion", "Adience", synthetic=synthetic),
        "age_distributions": F.age_distributions(
            {n: p["true_value"] for n, p in preds.items()}, folder / "ages", synthetic=synthetic),
        "group_histogram": F.group_histogram(np.bincount(g["true_class"], minlength=8), ADIENCE,
                                             folder / "groups", synthetic=synthetic),
    }


@pytest.fixture(scope="module")
def synthetic_figures(preds, tmp_path_factory):
    folder = tmp_path_factory.mktemp("figs")
    return folder, _all_figures(preds, folder, synthetic=True)


STEMS = {"fold_mae": "fold_mae", "error_vs_age": "error_vs_age", "cumulative_score": "cs",
         "confusion": "confusion", "age_distributions": "ages", "group_histogram": "groups"}


@pytest.mark.parametrize("name", list(STEMS))
def test_figure_writes_png_and_pdf(synthetic_figures, name):
    folder, outs = synthetic_figures
    _check_files(outs[name], folder / STEMS[name])


@pytest.mark.parametrize("name", list(STEMS))
def test_synthetic_marker_in_title_and_file_metadata(synthetic_figures, name):
    _, outs = synthetic_figures
    out = outs[name]
    assert "synthetic data" in out.title
    assert "synthetic data" in _texts(out.figure)          # the visible title, not just metadata
    assert b"synthetic data" in Path(out[0]).read_bytes()   # PNG tEXt "Title" chunk


def test_no_marker_without_synthetic(preds, tmp_path):
    out = F.cumulative_score(preds, tmp_path / "cs", synthetic=False)
    assert "synthetic" not in _texts(out.figure) and "synthetic" not in out.title


def test_rewrite_replaces_atomically_and_failure_leaves_old_file(preds, tmp_path, monkeypatch):
    stem = tmp_path / "sub" / "cs"                          # missing folder is created
    first = F.cumulative_score(preds, stem)
    before = Path(first[0]).read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(F.Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        F.cumulative_score(preds, stem, synthetic=True)
    assert Path(first[0]).read_bytes() == before
    assert sorted(p.name for p in stem.parent.iterdir()) == ["cs.pdf", "cs.png"]


def test_fold_mae_table_uses_metrics_and_natural_fold_order(preds):
    table = F.fold_mae_table(preds)
    assert list(table.index) == [str(i) for i in range(1, 13)]       # "2" before "10"
    p = preds["pretrained"]
    ref = M.per_fold_mae(p["true_value"], p["pred_expected"], p["fold"])["mae"]
    assert np.allclose(table["pretrained"], ref.loc[table.index])
    assert table["pretrained → imdb → agedb"].mean() < table["pretrained"].mean()


def test_error_by_age_bins_cover_all_images(preds):
    p = preds["pretrained"]
    t = F.error_by_age_table(p, bin_width=5)
    assert t["n"].sum() == len(p) and all(i % 5 == 0 for i in t.index)
    assert np.isclose((t["mae"] * t["n"]).sum() / t["n"].sum(),
                      M.mae_pooled(p["true_value"], p["pred_expected"]))


def test_confusion_rows_normalised_and_counts_from_metrics():
    g = _group_preds()
    counts, norm, names = F.confusion_data(g, ADIENCE)
    assert names == ["0-2", "4-6", "8-12", "15-20", "25-32", "38-43", "48-53", "60-100"]
    assert np.array_equal(counts, M.confusion_matrix(g["true_class"], g["pred_class"], 8))
    assert counts.sum() == len(g)
    present = counts.sum(axis=1) > 0
    assert np.allclose(norm[present].sum(axis=1), 1.0)
    assert np.isnan(norm[~present]).all() and not present[7]   # 60-100 never true: NaN row
    assert np.allclose(norm[present], counts[present] / counts[present].sum(1, keepdims=True))


def test_group_names_exact_ages_and_histogram_validation(tmp_path):
    assert F.group_names({"lo": [0, 1, 25], "hi": [0, 1, 32]}) == ["0", "1", "25-32"]
    with pytest.raises(ValueError, match="3 counts for 8 groups"):
        F.group_histogram([1, 2, 3], ADIENCE, tmp_path / "h")
    out = F.group_histogram({0: 5, 4: 9}, ["0-12", "15-20", "25-32", "x", "y"], tmp_path / "h")
    assert Path(out[0]).exists()


# --------------------------------------------------------------------------- LaTeX

def _balanced(tex: str) -> bool:
    depth = 0
    i = 0
    while i < len(tex):
        c = tex[i]
        if c == "\\":            # skip the escaped character (\{ \} \\ \%)
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _run_table() -> tuple[pd.DataFrame, list[str]]:
    table = pd.DataFrame({
        "configuration": ["baseline: training-set mean age", "pretrained → imdb ⇒ adience"],
        "mode": ["no image", "full"], "MAE": [8.6828, 5.3249], "Accuracy": ["44.34 ± 34.38", "61.41 ± 4.37"],
        "CS@5": [0.3283, math.nan], "images": [1002, 1002], "stage key": ["–", "ad4f_2334"]})
    header = ["Data: **synthetic data** (demo suite; 100% procedural)", "Protocol `lopo` #82 & $0",
              "Decision rule: expected value Σ age·p", "Dataset imdb: 6000 rows → 4200 used (age −420)"]
    return table, header


def test_to_latex_structure_and_column_count():
    table, header = _run_table()
    tex = L.to_latex(table, header, "FG-NET results (synthetic data)", "tab:fgnet-demo")
    assert _balanced(tex)
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    assert len(spec) == table.shape[1] == 7 and spec == "llrlrrl"
    for env in ("table", "tabular", "minipage"):
        assert tex.count(rf"\begin{{{env}}}") == tex.count(rf"\end{{{env}}}") == 1
    assert [r for r in ("\\toprule", "\\midrule", "\\bottomrule") if r not in tex] == []
    body = tex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0].strip().splitlines()
    assert len(body) == 2
    assert all(line.count(" & ") == 6 and line.endswith(r"\\") for line in body)
    assert "8.68" in body[0] and "5.32" in body[1] and "0.33" in body[0] and "1002 " in body[0]
    assert r"\label{tab:fgnet-demo}" in tex and r"\footnotesize" in tex
    assert tex.isascii()


def test_to_latex_escapes_specials_and_symbols():
    table, header = _run_table()
    tex = L.to_latex(table, header, "Rodríguez & Müller: 100% _ # $ {x}", "tab:x")
    assert r"pretrained $\rightarrow$ imdb $\Rightarrow$ adience" in tex
    assert r"61.41 $\pm$ 4.37" in tex and r"$\Sigma$ age$\cdot$p" in tex
    assert r"4200 used (age $-$420)" in tex
    assert r"\textbf{synthetic data}" in tex and r"\texttt{lopo}" in tex
    assert r"100\% procedural" in tex and r"\#82 \& \$0" in tex
    assert r"ad4f\_2334" in tex and r"CS@5" in tex and " -- " in tex   # NaN and en dash
    assert r"Rodr\'{\i}guez \& M\"{u}ller: 100\% \_ \# \$ \{x\}" in tex
    assert "**" not in tex and "`lopo`" not in tex
    assert L.escape("a\\b~c^d") == r"a\textbackslash{}b\textasciitilde{}c\textasciicircum{}d"


def test_to_latex_status_rule_and_count_columns():
    measured = pd.DataFrame({"configuration": ["pretrained"], "MAE": [5.3249], "images": [1002]})
    both = pd.concat([measured.assign(status="measured"), literature.rows("fgnet")],
                     ignore_index=True)
    tex = L.to_latex(both, [], "with literature", "tab:lit")
    assert tex.count(r"\midrule") == 2          # below the header and between measured/reported
    assert "1002 &" in tex and "1002.00" not in tex   # count column stayed integral after NaNs
    assert r"\begin{minipage}" not in tex       # no header lines → no note
    with pytest.raises(ValueError, match="label"):
        L.to_latex(measured, [], "x", "tab:bad label{")


# --------------------------------------------------------------------------- literature

def test_literature_fgnet_rows():
    rows = literature.rows("fgnet")
    assert len(rows) == 3 and set(rows["status"]) == {"reported"}
    assert set(rows["source"]) == {"thesis Table 2"}
    mae = dict(zip(rows["reference"], rows["MAE"]))
    assert mae == {"[47]": 2.39, "[2]": 2.84, "[40]": 3.09}        # thesis Table 2
    assert "LSTM attention" in rows.loc[rows["reference"] == "[47]", "configuration"].item()


def test_literature_adience_rows():
    rows = literature.rows("adience")
    assert len(rows) == 4 and set(rows["status"]) == {"reported"}
    assert set(rows["source"]) == {"thesis Table 3"}
    acc = dict(zip(rows["reference"], rows["Accuracy"]))
    assert acc == {"[47]": 67.83, "[40]": 64.00, "[38]": 61.78, "[29]": 50.70}   # Table 3
    assert rows["1-off"].isna().all()           # Table 3 reports no 1-off accuracy


def test_literature_thesis_rows_and_errors():
    rows = literature.rows("fgnet", include_thesis=True)
    best = rows[rows["configuration"] == "VGG-16-IMDB-AgeDB (thesis)"].iloc[0]
    assert (best["MAE"], best["MedianAE (folds)"], best["Lower Q"], best["Upper Q"]) == \
        (2.68, 2.24, 1.58, 3.35)                                        # thesis Table 4
    ad = literature.rows("adience", include_thesis=True).iloc[-1]
    assert (ad["Accuracy"], ad["Accuracy sd (folds)"], ad["1-off"], ad["1-off sd (folds)"]) == (61.41, 4.37, 87.80, 2.22)
    with pytest.raises(ValueError, match="no literature baselines"):
        literature.rows("morph")


def _thesis_text() -> str | None:
    for p in (os.environ.get("CASCADE_THESIS_TEXT"),
              Path(__file__).resolve().parents[2] / "shared/papers/004_85f0d25ec026dd96.txt",
              Path(__file__).resolve().parents[1] / "shared/papers/004_85f0d25ec026dd96.txt"):
        if p and Path(p).is_file():
            return Path(p).read_text(encoding="utf-8")
    return None


def test_literature_matches_thesis_text_verbatim():
    """Every baseline row must appear, method, reference and value, in the thesis's table text."""
    text = _thesis_text()
    if text is None:
        pytest.skip("thesis text not available on this machine")
    for target, dataset, col, unit in (("fgnet", "FG-NET-AD", "MAE", ""),
                                       ("adience", "Adience", "Accuracy", "%")):
        for r in literature.rows(target).itertuples(index=False):
            line = f"{dataset}\t{r.configuration} {r.reference}\t{getattr(r, col):.2f}{unit}"
            assert line in text, line
