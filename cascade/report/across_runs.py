"""`cascade compare RUN RUN [RUN ...]`: finished runs that differ in one thing (backbones,
losses, balancing) side by side on the same test images, with paired tests.

Why a command of its own: a run compares the prefixes of one cascade; "does SENet-50 beat
ResNet-50 here" is a question across runs.  Each run contributes its full cascade (every seed it
ran); the first run is the reference every other one is tested against (Δ with a subject
bootstrap CI, Wilcoxon over subjects or McNemar / sign-flip for accuracy, Holm across the
rows), and three or more runs get Friedman + Nemenyi with a critical-difference figure.  Runs
evaluated on other images (another target, protocol or data) are refused, never aligned.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cascade import runtime
from cascade.report import compare, figures
from cascade.report.header import opening
from cascade.report.tables import finished_plans, over_seeds, row_metrics, target_predictions, write_tables
from cascade.stages import plan as P
from cascade.store import atomic_write_json, atomic_write_text, stable_hash


def _members(folder: Path, every_configuration: bool) -> list[tuple[str, list[pd.DataFrame], dict, list[P.Plan], str | None]]:
    """A finished run's configurations as (name, one prediction frame per seed, labels, plans,
    the configuration it extends): its full cascade only, or every configuration, each under
    a name that says which run and which backbone it comes from."""
    plans = finished_plans(Path(folder))
    per_seed = [target_predictions(p) for p in plans]
    configs = list(per_seed[0]) if every_configuration else [list(per_seed[0])[-1]]
    tag = f"{plans[0].cfg['backbone']}: {{}} [{Path(folder).name}]"
    return [(tag.format(c), [seed[c][0] for seed in per_seed], per_seed[0][c][1], plans,
             tag.format(configs[i - 1]) if i else None) for i, c in enumerate(configs)]


def compare_runs(runs: list[str | Path], out_dir: Path, every_configuration: bool = False,
                 run_id: str | None = None, title: str = "Runs compared") -> tuple[str, Path]:
    """The comparison table of finished runs.  By default each run's full cascade, every run
    tested against the first; `every_configuration` (a study): every configuration of every
    run, each tested against the configuration it extends in its own run, all ranked together."""
    if len(runs) < 2 and not every_configuration:
        raise ValueError("cascade compare needs at least two finished runs")
    members = [m for r in runs for m in _members(Path(r), every_configuration)]
    names = [m[0] for m in members]
    labels = members[0][2]
    for name, _, lab, _, _ in members[1:]:
        if lab != labels:
            raise ValueError(f"{name} has other classes than {names[0]}: not the same task")
    exact = labels["lo"] == labels["hi"]
    preds = {name: frames for name, frames, _, _, _ in members}
    # a study: each configuration against the one it extends, a run's first (its pretrained
    # network) against the first run's; a comparison: every run's full cascade against the first's
    parents = {name: ((parent or names[0]) if every_configuration else names[0]) if i else None
               for i, (name, _, _, _, parent) in enumerate(members)}
    rows_per_seed_count = {len(frames) for frames in preds.values()}
    table_rows = []
    for name, frames, lab, plans, _ in members:
        seeds = [p.cfg["seed"] for p in plans]
        merged, _ = over_seeds(seeds, [[{"configuration": name, "mode": plans[0].targets[-1].params["mode"],
                                         **row_metrics(f, lab, p.cfg["seed"], p.cfg["report"]["tolerance"])}]
                                       for f, p in zip(frames, plans)])
        table_rows += merged
    table = pd.DataFrame(table_rows)
    pairs = compare.comparisons(preds, parents, exact, members[0][3][0].cfg["seed"])    # checks the same images
    ranked = compare.rank_test(preds, exact)
    plan = members[0][3][0]
    run_id = run_id or "compare-" + stable_hash([str(Path(r).name) for r in runs], 8)
    folder = Path(out_dir) / run_id
    synthetic = any(t.synthetic for m in members for t in m[3][0].tables.values())
    header = opening(plan.cfg, plan.targets[-1].info["protocol"]["name"],
                     "; " + ("every configuration of every run, each Δ against the configuration it extends"
                             if every_configuration else "each run's full cascade, the first run the reference of every Δ"),
                     {n: t for m in members for n, t in m[3][0].tables.items()}) + [
        "Seeds per run: " + ", ".join(str(len(f)) for f in preds.values())
        + ("" if rows_per_seed_count == {1} else " (each number the mean over its run's seeds ± sd)"),
        runtime.fingerprint_line(runtime.fingerprint(plan.cfg))
    ]
    md = write_tables(folder, title, table, header, f"{plan.cfg['target']}: {title.lower()}")
    md += ("\n## Each configuration against the one it extends\n\n" if every_configuration
           else "\n## Each run against the first\n\n") + compare.comparisons_markdown(pairs)
    atomic_write_text(folder / "comparisons.csv", pairs.to_csv(index=False))
    written = []
    if ranked is not None:
        md += compare.rank_test_markdown(ranked, "Friedman test")
        written = figures.critical_difference(ranked, folder / "figures" / "critical_difference", synthetic)
    atomic_write_text(folder / "table.md", md)
    atomic_write_json(folder / "run.json", {"command": "study" if every_configuration else "compare",
                                            "runs": [str(r) for r in runs], "header": header, "title": title,
                                            "environment": runtime.fingerprint(plan.cfg),
                                            "figures": [str(Path(p).relative_to(folder)) for p in written]})
    return md, folder
