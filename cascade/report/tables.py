"""The run table: one row per cascade configuration, metrics from the fold predictions.

Why the header block: a number without its data version, cleaning counts, decision rule, MAE
aggregation, seed, backbone and weight source cannot be compared with anything, and a number
computed on the synthetic demo suite must never be mistaken for a real result.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cascade import metrics as M
from cascade import runtime, tracking
from cascade.report import compare, figures, latex, literature, run_record
from cascade.report.header import cleaning_line, opening, sources_text
from cascade.stages.execute import Runner
from cascade.stages.leakage import leakage
from cascade.data.datasets import synthetic_sources
from cascade.stages.plan import Plan
from cascade.store import StageDir, atomic_write_json, atomic_write_text, stable_hash, sweep_temporaries


def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def row_metrics(pred: pd.DataFrame, labels: dict, seed: int, tolerance=()) -> dict:
    """Age targets: expected-value MAE and the thesis Table 4 columns, with two labelled
    intervals stored as numbers: the subject bootstrap of the pooled MAE and the Student-t
    interval of the per-fold mean.  Group targets (Adience): exact and 1-off accuracy of the
    argmax group, mean and std over folds.  Age ranges over images whose exact age is known
    (`labels.<stage>=bins:...`): the group columns plus quadratic kappa, class-index MAE and
    the MAE in years of the expected bin centre."""
    if labels["lo"] == labels["hi"]:
        s = M.regression_summary(pred["true_value"], pred["pred_expected"], pred["fold"],
                                 pred["subject"], seed=seed)
        return {"MAE": s["mae_pooled"], "CI low (subject bootstrap)": s["boot_ci_low"],
                "CI high (subject bootstrap)": s["boot_ci_high"], "MAE (fold mean)": s["mae_fold_mean"],
                "t-CI low (folds)": s["t_ci_low"], "t-CI high (folds)": s["t_ci_high"],
                "MedianAE (folds)": s["fold_mae_median"], "Lower Q": s["fold_mae_q1"],
                "Upper Q": s["fold_mae_q3"], "CS@5": s["cs5"],
                **{f"±{k} y (argmax)": M.tolerance_accuracy(pred["true_value"], pred["pred_argmax"], float(k))
                   for k in tolerance},
                "images": s["n_images"], "folds": s["n_folds"]}
    s = M.classification_summary(pred["true_class"], pred["pred_class"], pred["fold"], len(labels["lo"]))
    row = {"Accuracy": 100 * s["accuracy_fold_mean"], "Accuracy sd (folds)": 100 * s["accuracy_fold_std"],
           "1-off": 100 * s["one_off_fold_mean"], "1-off sd (folds)": 100 * s["one_off_fold_std"],
           "Balanced acc.": s["balanced_accuracy"]}
    if "true_age" in pred and pred["true_age"].notna().all():
        row.update({"κ (quadratic)": s["kappa_quadratic"], "class MAE": s["class_mae"],
                    "MAE (years, bin centres)": M.mae_pooled(pred["true_age"], pred["pred_expected"])})
    return {**row, "images": s["n_images"], "folds": s["n_folds"]}


#: Columns that summarise a metric over folds: left out of a single-split protocol's table.
_FOLD_STATISTICS = {"MAE (fold mean)", "t-CI low (folds)", "t-CI high (folds)", "MedianAE (folds)", "Lower Q",
                    "Upper Q", "Accuracy sd (folds)", "1-off sd (folds)"}
#: Columns whose values are counts or identities, not measurements: never averaged over seeds.
_FIXED = ("configuration", "mode", "images", "folds", "stage key", "status")
#: Spread columns of a metric X: `X sd (folds)` (one seed) and `X sd (seeds)`; Markdown prints
#: them as `X ± sd` in X's cell.
SD_FOLDS, SD_SEEDS = " sd (folds)", " sd (seeds)"


#: Interval columns stored as two numbers, printed as one `[low, high]` cell.
_INTERVALS = {"95% CI (subject bootstrap)": ("CI low (subject bootstrap)", "CI high (subject bootstrap)"),
              "95% t-interval (folds)": ("t-CI low (folds)", "t-CI high (folds)")}


_BOUNDS = {b for pair in _INTERVALS.values() for b in pair}


def over_seeds(seeds: list[int], rows_per_seed: list[list[dict]]) -> tuple[list[dict], pd.DataFrame]:
    """Table rows from each seed's rows (same configurations, same order): every measured
    number is the mean over the seeds, with its standard deviation over the seeds beside it
    (`X sd (seeds)`, several seeds only; the fold spread is then left to seeds.csv; an
    interval's bounds are the means of each seed's bounds), and a
    `seeds` column saying how many seeds each number rests on.  Also returns every seed's rows
    (the long `seeds.csv`)."""
    n = len(rows_per_seed)
    out = []
    for rows in zip(*rows_per_seed):
        merged = {}
        for k, v in rows[0].items():
            if k in _FIXED:
                merged[k] = v if k != "stage key" else ", ".join(dict.fromkeys(r[k] for r in rows))
            elif not (n > 1 and k.endswith(SD_FOLDS)):
                values = np.array([r[k] for r in rows], dtype=float)
                merged[k] = float(np.mean(values))
                if n > 1 and k not in _BOUNDS:          # an interval's bounds: their mean only
                    merged[k + SD_SEEDS] = float(np.std(values, ddof=1))
        merged["seeds"] = n
        out.append(merged)
    long = pd.DataFrame([{"seed": seed, **r} for seed, rows in zip(seeds, rows_per_seed) for r in rows])
    return out, long


def mixed_data_line(cfg: dict) -> str | None:
    """What a plan (a dry run's too, before any data exists) and a run's start print when real
    and synthetic data meet (None otherwise)."""
    flags = synthetic_sources(cfg)
    if all(flags.values()) or not any(flags.values()):
        return None
    return ("data: MIXED " + sources_text(flags).replace("**", "")
            + "; numbers after a synthetic stage are not real results (data.demo=forbid refuses such runs)")


def write_tables(folder: Path, title: str, table: pd.DataFrame, header: list[str], caption: str) -> str:
    """`table.md` (under `# title` with the header), `table.csv` and `table.tex` (booktabs) in
    `folder`; returns the Markdown."""
    name = Path(folder).name
    md = f"# {title} {name}\n\n" + to_markdown(table, header)
    atomic_write_text(Path(folder) / "table.md", md)
    atomic_write_text(Path(folder) / "table.csv", table.to_csv(index=False))
    atomic_write_text(Path(folder) / "table.tex", latex.to_latex(display(table), header, caption=f"{caption} ({name})",
                                                                 label=f"tab:{name}"))
    return md


def target_predictions(plan: Plan) -> dict[str, tuple[pd.DataFrame, dict]]:
    """{configuration name: (predictions, labels.json)} of every finished target, read once for
    the tables and the figures."""
    out = {}
    for node in plan.targets:
        folder = plan.home / "stages" / node.key
        out["pretrained" + "".join(f" → {s}" for s in node.chain)] = (
            pd.read_csv(folder / "predictions.csv", dtype={"subject": str, "fold": str}),
            json.loads((folder / "labels.json").read_text()))
    return out


def finished_plans(run: Path) -> list[Plan]:
    """The plans (one per seed) of a finished `cascade run` results folder, rebuilt from the
    settings its run.json records; an error names what is missing."""
    from cascade import config as C
    from cascade.stages import plan as P

    settings = run_record(run).get("settings")
    if settings is None:
        raise ValueError(f"{run}: not a `cascade run` results folder (no settings in run.json)")
    plans = [P.build(c) for c in C.per_seed(C.load(settings))]
    missing = [n.label for p in plans for n in p.targets if P.status(p, n) != "cached"]
    if missing:
        raise FileNotFoundError(f"{run}: stages not finished in {plans[0].home}: {', '.join(missing)}; "
                                f"run `cascade run {' '.join(settings)}` first")
    return plans


def parents(names: list[str]) -> dict[str, str | None]:
    """The configuration each one extends (pretrained → imdb → agedb extends pretrained → imdb),
    where that one is in the table."""
    return {n: (n.rsplit(" → ", 1)[0] if " → " in n and n.rsplit(" → ", 1)[0] in names else None)
            for n in names}


def _stage_threads(plan: Plan) -> str:
    """The torch threads the plan's trained stages and target folds used (recorded in their
    metrics / fold histories): numbers depend on them (see cascade/runtime.py)."""
    seen: dict[str, set] = {"train": set(), "target": set()}
    for node in plan.nodes:
        folder = plan.home / "stages" / node.key
        if node.kind == "train" and (folder / "metrics.json").exists():
            seen["train"].add(json.loads((folder / "metrics.json").read_text()).get("threads"))
        for hist in (folder / "folds").glob("*.history.json") if node.kind == "target" else ():
            seen["target"].add(json.loads(hist.read_text()).get("threads"))

    def said(values: set) -> str:
        known = sorted(t for t in values if t is not None)
        return (", ".join(map(str, known)) or "not recorded") + (" (some not recorded)" if None in values and known else "")
    return f"stages {said(seen['train'])}; folds {said(seen['target'])}" if seen["train"] else f"folds {said(seen['target'])}"


def _recipe_lines(plan: Plan) -> list[str]:
    """What changes how the numbers were made beyond the thesis's recipe and is easy to miss:
    a cut cache's flip-only augmentation, test-time augmentation."""
    lines = []
    cut = [n.label for n in plan.nodes if n.params.get("cut_cache")]
    if cut:
        lines.append(f"Partial fine-tuning (train.trainable_layers={plan.cfg['train']['trainable_layers']}) with the "
                     f"layers below them computed once per image (train.cut_cache): augmentation is the horizontal "
                     f"flip only, in {', '.join(cut)}")
    tta = [n.label for n in plan.targets if n.params.get("tta")]
    if tta:
        lines.append(f"Test-time augmentation: predictions average the crop and its mirror image "
                     f"(train.tta=flip), in {', '.join(tta)}")
    return lines


def run_table(plans: list[Plan], preds: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, list[str], str]:
    """The run table over one plan per seed (same configurations, own keys): rows, every seed's
    rows (long), the header and the run id."""
    plan = plans[0]
    cfg = plan.cfg
    seeds = [p.cfg["seed"] for p in plans]
    rows_per_seed = []
    for p, by_config in zip(plans, preds):
        rows = []
        for node, (cascade, (pred, labels)) in zip(p.targets, by_config.items()):
            exact = labels["lo"] == labels["hi"]
            if not rows:        # every target shares the folds: one image-blind baseline row
                blind = pred.assign(pred_expected=pred["base_mean"], pred_class=pred["base_class"])
                rows.append({"configuration": "baseline: training-set mean age" if exact
                             else "baseline: commonest training group", "mode": "no image",
                             **row_metrics(blind.assign(pred_argmax=blind["base_mean"]), labels, p.cfg["seed"],
                                           cfg["report"]["tolerance"]), "stage key": "–"})
            rows.append({"configuration": cascade, "mode": node.params["mode"],
                         **row_metrics(pred, labels, p.cfg["seed"], cfg["report"]["tolerance"]),
                         "stage key": node.key})
        rows_per_seed.append(rows)
    merged, long = over_seeds(seeds, rows_per_seed)
    table = pd.DataFrame(merged)       # with several seeds, "stage key" lists each seed's key
    single = int(table["folds"].max()) == 1
    if single:                         # one split: statistics over folds would restate the pooled number
        table = table.drop(columns=[c for c in table.columns
                                    if c in _FOLD_STATISTICS or c.split(" sd (")[0] in _FOLD_STATISTICS])
        long = long.drop(columns=[c for c in long.columns if c in _FOLD_STATISTICS])
    proto = plan.targets[0].info["protocol"]["name"]
    exact = next(iter(preds[0].values()))[1]["lo"] == next(iter(preds[0].values()))[1]["hi"]
    header = opening(cfg, proto, f" ({table['folds'].iloc[0]} folds)", plan.tables, plan.nodes[0].info["weights"]) + [
        "Decision rule: expected value Σ age·p (MAE); argmax group (accuracy)",
        ("MAE aggregation: `MAE` pooled over all test images, with its 95% CI from a bootstrap over subjects"
         + ("" if single else "; `MAE (fold mean)` = mean of per-fold MAEs, with its 95% Student-t interval over "
            "folds; MedianAE / quartiles over per-fold MAEs (thesis Table 4)")) if exact else
        ("Accuracy and 1-off: % of the test images (one split)" if single else
         "Accuracy and 1-off: mean over folds (%), ± their standard deviation over folds"),
        (f"Seeds: {', '.join(map(str, seeds))} — each number is the mean over {len(seeds)} seeds ± its standard "
         f"deviation over the seeds (an interval: the mean of each seed's bounds); every seed's value is in "
         f"seeds.csv") if len(seeds) > 1 else
        f"Seed: {seeds[0]} (one seed; `seeds=0,1,2` runs several and reports mean ± sd)",
        f"Torch threads when trained: {_stage_threads(plan)}",
    ] + _recipe_lines(plan)
    # every intermediate stage against the splits it must not have seen; first, because what
    # data.exclude_overlap removes is a step of the cleaning reports printed next
    overlap = leakage(plan).lines()
    for name, t in plan.tables.items():
        info = plan.keyed(name).info
        header.append(cleaning_line(name, t, info["manifest"], info.get("cleaning")))
    header += overlap
    return table, long, header, run_name(plans)


def run_name(plans: list[Plan]) -> str:
    """The results folder's run-id: the run's name, target and backbone, and a hash of its target
    stage keys (known before anything trains: the tracked run is named so from the start)."""
    cfg = plans[0].cfg
    prefix = f"{cfg['run']['name']}-" if cfg["run"]["name"] else ""
    return f"{prefix}{cfg['target']}-{cfg['backbone'].replace(':', '-')}-" + \
        stable_hash([n.key for p in plans for n in p.targets], 8)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The numeric table as printed: a metric and its spread column in one `mean ± sd` cell,
    an interval's two bounds in one `[low, high]` cell (the CSV keeps every number apart)."""
    out = table.copy()
    for name, (lo, hi) in _INTERVALS.items():
        if lo in out:
            pos = list(out.columns).index(lo)
            cells = [pd.NA if pd.isna(a) and pd.isna(b) else f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(out[lo], out[hi])]
            out = out.drop(columns=[lo, hi])
            out.insert(pos, name, cells)
    for col in [c for c in out.columns if c.endswith((SD_FOLDS, SD_SEEDS))]:
        metric = col[: -len(SD_SEEDS if col.endswith(SD_SEEDS) else SD_FOLDS)]
        if metric in out:
            out[metric] = [v if not isinstance(v, float) or math.isnan(v) else
                           _fmt(v) + ("" if pd.isna(sd) else f" ± {_fmt(sd)}") for v, sd in zip(out[metric], out[col])]
        out = out.drop(columns=[col])
    return out


def to_markdown(table: pd.DataFrame, header: list[str]) -> str:
    table = display(table)
    cols = list(table.columns)
    cells = [[_fmt(v) if isinstance(v, float) or v is pd.NA else str(v) for v in row]
             for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([*(f"- {h}" for h in header), "", *lines]) + "\n"


def run_and_write(plans: list[Plan], out_dir: Path, settings: list[str], progress: bool) -> tuple[str, Path]:
    """Train what the plans (one per seed) still miss, then write their results folder
    (:func:`write_run`): what `cascade run`, every cell of `cascade study` and `cascade verify`'s
    rebuild do.  With `track.*` on, one tracked run (cascade/tracking.py) holds every stage trained
    and, when it ends, the results folder as artifacts."""
    with tracking.session(plans[0].cfg, run_name(plans), settings) as track:
        for plan in plans:
            Runner(plan, progress=progress, track=track).run()
        md, folder = write_run(plans, out_dir, settings)
        track.artifacts(folder)
    return md, folder


def write_run(plans: Plan | list[Plan], out_dir: Path, settings: list[str] | None = None) -> tuple[str, Path]:
    """Tables (Markdown, CSV, LaTeX, with the literature's reported rows where the thesis gives
    them), the paired comparisons and figures of finished plans (one per seed) under
    `out_dir/<run-id>/`.  `settings` (the key=value words of the run) go into run.json, so
    `cascade report` can rebuild the same plans."""
    plans = [plans] if isinstance(plans, Plan) else list(plans)
    preds = [target_predictions(p) for p in plans]
    table, long, header, run_id = run_table(plans, preds)
    # One writer per results folder at a time (two runs of one cascade end here together); under
    # the lock, temporary files of a writer killed mid-write are garbage and are removed.
    with StageDir(Path(out_dir), run_id).lock():
        sweep_temporaries(Path(out_dir) / run_id)
        return _write_run(plans, preds, table, long, header, run_id, Path(out_dir) / run_id, settings)


def _comparisons(plans: list[Plan], preds: list[dict], folder: Path) -> tuple[str, list[Path]]:
    """Each configuration against the one it extends (Δ with its CI, paired test, Holm), and
    with three or more configurations Friedman + Nemenyi with a critical-difference figure:
    `comparisons.csv` (numbers) and the Markdown section under the table."""
    names = list(preds[0])
    by_config = {n: [p[n][0] for p in preds] for n in names}
    exact = preds[0][names[0]][1]["lo"] == preds[0][names[0]][1]["hi"]
    seed = plans[0].cfg["seed"]
    frame = compare.comparisons(by_config, parents(names), exact, seed)
    written: list[Path] = []
    md = ""
    if len(frame):
        atomic_write_text(folder / "comparisons.csv", frame.to_csv(index=False))
        md += "## Each configuration against the one it extends\n\n" + compare.comparisons_markdown(frame)
    ranked = compare.rank_test(by_config, exact)
    if ranked is not None:
        md += compare.rank_test_markdown(ranked, "All configurations: Friedman test")
        synthetic = any(t.synthetic for t in plans[0].tables.values())
        written += [Path(p) for p in figures.critical_difference(ranked, folder / "figures" / "critical_difference",
                                                                 synthetic)]
    return md, written


def _write_run(plans: list[Plan], preds: list[dict], table: pd.DataFrame, long: pd.DataFrame, header: list[str],
               run_id: str, folder: Path, settings: list[str] | None) -> tuple[str, Path]:
    plan = plans[0]
    fp = runtime.fingerprint(plan.cfg)
    header = header + [runtime.fingerprint_line(fp)] + environment_notes(plans, folder, fp)
    table.insert(len(table.columns) - 1, "status", "measured")
    if plan.cfg["target"] in ("fgnet", "adience"):
        lit = literature.rows(plan.cfg["target"])
        lit["configuration"] = lit["configuration"] + " " + lit["reference"] + " (" + lit["source"] + ")"
        table = pd.concat([table, lit.drop(columns=["reference", "source"])], ignore_index=True)
        header = header + ["Rows with status `reported` are published results (thesis Tables 2-3), "
                           "not computed here"]
        for col in ("images", "folds", "seeds"):         # counts stay integers beside empty cells
            table[col] = table[col].astype("Int64")
    md = write_tables(folder, "Results", table, header, f"{plan.cfg['target']}: cascade configurations")
    atomic_write_text(folder / "seeds.csv", long.to_csv(index=False))
    section, cd_figure = _comparisons(plans, preds, folder)
    if section:
        md += "\n" + section
        atomic_write_text(folder / "table.md", md)
    written = write_figures(plan, preds, folder / "figures") + cd_figure + _overlap(plan, folder)
    atomic_write_json(folder / "run.json", {"header": header, "settings": settings or [],
                                            "environment": fp,
                                            "seeds": [p.cfg["seed"] for p in plans],
                                            "stages": stage_keys(plans),
                                            "figures": [str(p.relative_to(folder)) for p in written],
                                            "config": {k: v for k, v in plan.cfg.items()}})
    return md, folder


def stage_keys(plans: list[Plan]) -> dict[str, str]:
    """{node label: key} of every node of the plans (one per seed; with several, each label
    names its seed): what run.json records, and what `cascade verify` and the nothing-moves test
    (tests/test_nothing_moves.py) compare a rebuild with."""
    return {f"{n.label} (seed {p.cfg['seed']})" if len(plans) > 1 else n.label: n.key for p in plans for n in p.nodes}


def environment_notes(plans: list[Plan], folder: Path, fp: dict) -> list[str]:
    """Header lines for numbers made under another environment than this one (see
    cascade/runtime.py): stages that recorded a different one, and a results folder whose
    run.json recorded a different one before this write (another machine's README run, say).
    Only number-moving fields count (runtime.NUMERIC_FIELDS); fields a record lacks are not
    compared."""
    notes = []
    for plan in plans:
        for node in plan.nodes:
            metrics = plan.home / "stages" / node.key / "metrics.json"
            recorded = json.loads(metrics.read_text()).get("environment") if metrics.exists() else None
            differs = runtime.numeric_differences(recorded or {}, fp)
            if differs:
                notes.append(f"Stage {node.label} was made under another environment than this table: "
                             f"{'; '.join(differs)}")
    previous = folder / "run.json"
    if previous.exists():
        differs = runtime.numeric_differences(json.loads(previous.read_text()).get("environment") or {}, fp)
        if differs:
            notes.append(f"This folder held numbers made under another environment before this write "
                         f"({'; '.join(differs)}): they may differ from these (`cascade verify FOLDER` "
                         f"rebuilds a folder and compares)")
    return notes


def _overlap(plan: Plan, folder: Path) -> list[Path]:
    """`overlap.csv` (every finding of the run's leakage audit, its header lines' detail) and,
    when photos were found, a figure of the closest pairs."""
    if not any(n.kind == "train" for n in plan.nodes):
        return []
    audit = leakage(plan)
    atomic_write_text(folder / "overlap.csv", audit.findings().to_csv(index=False))
    examples = audit.examples()
    if not examples:
        return []
    synthetic = any(t.synthetic for t in plan.tables.values())
    return [Path(p) for p in figures.overlap_pairs(examples, folder / "figures" / "overlap_pairs", synthetic)]


def confusion_table(pred: pd.DataFrame, labels: dict, path: Path, name: str) -> Path:
    """Counts of true (rows) vs. predicted (columns) groups with per-group precision and recall
    (thesis Table 6), as Markdown and CSV."""
    counts, _, names = figures.confusion_data(pred, labels)
    frame = pd.DataFrame(counts, index=[f"true {n}" for n in names], columns=names, dtype=float)
    tp = counts.diagonal().astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["recall"] = tp / counts.sum(1)
        precision = tp / counts.sum(0)
    frame.loc["precision"] = list(precision) + [float("nan")]
    cells = [[str(int(v)) for v in row] + [_fmt(r)] for row, r in zip(counts, frame["recall"].iloc[:-1])]
    cells.append([_fmt(p) for p in precision] + ["–"])
    shown = pd.DataFrame(cells, index=list(frame.index), columns=list(frame.columns)).reset_index(names="")
    atomic_write_text(path, f"# Confusion matrix: {name}\n\n" + to_markdown(shown, []))
    atomic_write_text(path.with_suffix(".csv"), frame.to_csv(float_format="%.6g"))
    return path


def _class_report(pred: pd.DataFrame, labels: dict, path: Path, name: str) -> Path:
    """Per-class precision, recall, F1 and support with macro and support-weighted averages, and
    the row-normalised confusion matrix (each row: where that class's images went), as Markdown
    and CSV: the per-class view the related studies report."""
    names = figures.group_names(labels)
    k = len(names)
    r = M.precision_recall_f1(pred["true_class"], pred["pred_class"], k)
    frame = pd.DataFrame({"precision": r["precision"], "recall": r["recall"], "f1": r["f1"],
                          "support": r["support"]}, index=names)
    for avg in ("macro", "weighted"):
        frame.loc[f"{avg} avg"] = [r[avg]["precision"], r[avg]["recall"], r[avg]["f1"], int(r["support"].sum())]
    frame["support"] = frame["support"].astype(int)
    rows = pd.DataFrame(M.confusion_matrix(pred["true_class"], pred["pred_class"], k, normalize=True),
                        index=[f"true {n}" for n in names], columns=names)
    atomic_write_text(path, f"# Per-class report: {name}\n\n" + to_markdown(frame.reset_index(names="class"), [])
                      + "\n## Confusion matrix, rows normalised (recall on the diagonal)\n\n"
                      + to_markdown(rows.reset_index(names=""), []))
    atomic_write_text(path.with_suffix(".csv"), frame.to_csv(float_format="%.6g", index_label="class"))
    atomic_write_text(path.with_name(path.stem + "_confusion_rows.csv"), rows.to_csv(float_format="%.6g"))
    return path


def write_figures(plan: Plan, preds_per_seed: list[dict[str, tuple[pd.DataFrame, dict]]], folder: Path) -> list[Path]:
    """The run's figures: per-fold MAE (with the spread over seeds where there are several),
    error vs. age and cumulative scores for age targets (thesis Figures 10-12), a confusion
    heatmap per configuration for group targets (Table 6 / Figure 13), and the age
    distributions of the datasets in use (Figures 5-6).  Figures other than the per-fold MAE
    show the first seed."""
    synthetic = any(t.synthetic for t in plan.tables.values())
    labels = next(iter(preds_per_seed[0].values()))[1]
    preds = {name: pred for name, (pred, _) in preds_per_seed[0].items()}
    written: list[Path] = []
    if labels["lo"] == labels["hi"]:
        seeds = {name: [p[name][0] for p in preds_per_seed] for name in preds} if len(preds_per_seed) > 1 else None
        written += figures.fold_mae(preds, folder / "fold_mae", synthetic, seeds=seeds)
        written += figures.error_vs_age(preds, folder / "error_vs_age", synthetic)
        written += figures.cumulative_score(preds, folder / "cumulative_score", synthetic)
    else:
        for i, (name, pred) in enumerate(preds.items()):
            written += figures.confusion(pred, labels, folder / f"confusion_{i}", name, synthetic)
            written.append(confusion_table(pred, labels, folder.parent / f"confusion_{i}.md", name))
            written.append(_class_report(pred, labels, folder.parent / f"classes_{i}.md", name))
        counts = next(iter(preds.values()))["true_class"].value_counts().to_dict()
        written += figures.group_histogram(counts, labels, folder / "groups", synthetic)
    ages = {name: t.frame["age_lo"].to_numpy() for name, t in plan.tables.items()
            if (t.frame["age_lo"] == t.frame["age_hi"]).all()}
    if ages:
        written += figures.age_distributions(ages, folder / "age_distributions", synthetic)
    return [Path(p) for p in written]
