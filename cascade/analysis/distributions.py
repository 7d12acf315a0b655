"""`cascade analyse distributions`: the age labels of the datasets in use (thesis section 3,
Figures 5 and 6) — why a source dataset whose ages sit elsewhere transfers less, and where the
target's label space is too sparse to learn (the hard subjects of `analyse subjects`).

Writes the cumulative age distribution of every exact-age dataset of the run (its stages and its
target; Figure 5), the images per Adience age group (Figure 6), and a table of each dataset's
age statistics, including the thesis's measure of sparsity: images per year of age above 50
(FG-NET: 1.75).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cascade.analysis import common
from cascade.data.datasets import LabelSpace, open_dataset
from cascade.report import figures

#: Ages above this count as the sparse upper label space (thesis: "for age labels higher than 50
#: years, an average of 1.75 images is provided per label").
OLD = 50


def age_table(ages: dict[str, np.ndarray], subjects: dict[str, int]) -> pd.DataFrame:
    rows = []
    for name, a in ages.items():
        old_years = max(int(a.max()) - OLD, 0)                   # the labels OLD+1 .. max age
        rows.append({"dataset": name, "images": a.size, "subjects": subjects[name], "min age": int(a.min()),
                     "median age": float(np.median(a)), "mean age": float(a.mean()), "max age": int(a.max()),
                     "% under 20": 100 * float((a < 20).mean()), f"% over {OLD}": 100 * float((a > OLD).mean()),
                     f"images per year over {OLD}": float((a > OLD).sum() / old_years) if old_years else float("nan")})
    return pd.DataFrame(rows)


def analyse(cfg: dict, settings: list[str], progress: bool = True) -> tuple[str, Path]:
    plan = common.full_plan(cfg)
    tables = {n: t for n, t in plan.tables.items() if (t.frame["age_lo"] == t.frame["age_hi"]).all()}
    ages = {n: t.frame["age_lo"].to_numpy(float) for n, t in tables.items()}
    adience = open_dataset(cfg, "adience", plan.home)
    labels = LabelSpace.of(adience)
    counts = np.bincount(labels.encode(adience.frame["age_lo"], adience.frame["age_hi"]), minlength=len(labels))
    names = figures.group_names({"lo": labels.lo, "hi": labels.hi})
    synthetic = common.synthetic(plan) or adience.synthetic
    manifests = [t.manifest_records() for t in [*tables.values(), adience]]
    folder = Path(cfg["run"]["results_dir"]) / common.run_id("distributions", cfg, manifests)
    written = list(figures.age_distributions(ages, folder / "figures" / "age_distributions", synthetic))
    written += figures.group_histogram(counts, names, folder / "figures" / "adience_groups", synthetic,
                                       title="Adience: images per age group")
    head = common.header(plan, [])[:1] + [
        f"Dataset {t.name}: {t.report.n_raw} rows → {len(t)} used" for t in [*tables.values(), adience]]
    groups = pd.DataFrame({"group": names, "images": counts, "share %": 100 * counts / counts.sum()})
    subjects = {n: int(t.frame["subject"].nunique()) for n, t in tables.items()}
    notes = ["Figures: `figures/age_distributions` (cumulative, thesis Figure 5), `figures/adience_groups` "
             f"(thesis Figure 6). `images per year over {OLD}`: images older than {OLD} divided by the "
             f"number of year labels from {OLD + 1} to the dataset's oldest age."]
    md = common.write_outputs(folder, f"Age distributions {folder.name}", head,
                              {"ages": age_table(ages, subjects), "adience_groups": groups}, settings, written, notes, cfg=cfg)
    return md, folder
