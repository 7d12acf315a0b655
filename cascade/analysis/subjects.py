"""`cascade analyse subjects`: which held-out subjects are hard under leave-one-person-out, and
whether the label distribution explains it (thesis section 6, "Variance in Prediction Error").

The thesis's hypothesis: a subject is hard when its ages are sparsely sampled among the other
subjects' images (the training set of its fold).  So for every subject this reports its MAE (the
expected value), its rank, and its *support*: the mean number of training images within
± `analyse.window` years of each of its ages, with the rank correlation of support and MAE.  It
then runs the `hard-subjects` protocol (subjects 002-005 held out together, trained on the rest)
and writes the confusion matrix of true vs. predicted age bins (`analyse.bin` years; thesis
Figure 13).  With `balance.*` set (the remedy the thesis names), the same is run without it too,
one row per setting, so the remedy's effect on the hard subjects is a number.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cascade import metrics as M
from cascade.analysis import common
from cascade.protocols import load_protocol
from cascade.report import figures
from cascade.report.tables import _confusion_table
from cascade.stages.execute import Runner

#: Images this old or older count as the sparse region in the settings table (thesis: "the upper
#: regions of the label space are only sparsely sampled"; above 50 FG-NET has 1.75 images per age).
SPARSE_AGE = 40


def support(ages: np.ndarray, subjects: np.ndarray, window: int) -> np.ndarray:
    """Per image: how many images of *other* subjects have an age within ± `window` years — the
    training images near its age in its leave-one-person-out fold."""
    near = np.abs(ages[:, None] - ages[None, :]) <= window
    other = subjects[:, None] != subjects[None, :]
    return (near & other).sum(1)


def subject_table(pred: pd.DataFrame, window: int) -> pd.DataFrame:
    """One row per subject, hardest first: images, age range, MAE, rank, mean support."""
    p = pred.assign(err=(pred["pred_expected"] - pred["true_value"]).abs(),
                    support=support(pred["true_value"].to_numpy(float), pred["subject"].to_numpy(), window))
    t = p.groupby("subject").agg(images=("err", "size"), age_min=("true_value", "min"),
                                 age_max=("true_value", "max"), MAE=("err", "mean"),
                                 support=("support", "mean")).reset_index()
    t = t.sort_values(["MAE", "subject"], ascending=[False, True]).reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    t["ages"] = t["age_min"].astype(int).astype(str) + "-" + t["age_max"].astype(int).astype(str)
    return t[["rank", "subject", "images", "ages", "MAE", "support"]]


def age_bins(pred: pd.DataFrame, width: int) -> tuple[pd.DataFrame, dict]:
    """Predictions with true / predicted (expected value) ages as `width`-year bin indices, and
    the bins as a labels.json-style dict (for the confusion table and heatmap)."""
    true = pred["true_value"].to_numpy(float)
    guess = np.clip(pred["pred_expected"].to_numpy(float), 0, None)
    n = int(max(true.max(), guess.max()) // width) + 1
    labels = {"lo": [i * width for i in range(n)], "hi": [i * width + width - 1 for i in range(n)]}
    return pred.assign(true_class=(true // width).astype(int), pred_class=(guess // width).astype(int)), labels


def _balance_name(cfg: dict) -> str:
    b = cfg["balance"]
    return "none" if (b["weights"], b["sampler"]) == ("none", "none") else \
        f"weights={b['weights']}, sampler={b['sampler']} ({b['stages']})"


def _run(cfg: dict, protocol: str, progress: bool):
    """The full cascade's target under `protocol`: run what is missing, return (plan, node, predictions)."""
    cfg = copy.deepcopy(cfg)
    cfg["stages"][cfg["target"]]["protocol"] = protocol
    plan = common.full_plan(cfg)
    frame = plan.tables[cfg["target"]].frame
    if not (frame["age_lo"] == frame["age_hi"]).all():
        raise ValueError(f"analyse subjects needs exact ages; {cfg['target']} has age groups")
    Runner(plan, progress=progress).run()
    node = plan.targets[0]
    pred = pd.read_csv(plan.home / "stages" / node.key / "predictions.csv", dtype={"subject": str, "fold": str})
    return plan, node, pred


def analyse(cfg: dict, settings: list[str], progress: bool = True) -> tuple[str, Path]:
    target, window, width = cfg["target"], cfg["analyse"]["window"], cfg["analyse"]["bin"]
    protocol = cfg["stages"][target]["protocol"]
    if load_protocol(protocol)["splitter"] != "leave_one_group_out":
        raise ValueError(f"analyse subjects needs a leave-one-person-out target; {target} uses protocol "
                         f"{protocol!r} (set stages.{target}.protocol=lopo)")
    plain = copy.deepcopy(cfg)
    plain["balance"].update(weights="none", sampler="none")
    runs = [plain] if _balance_name(cfg) == "none" else [plain, cfg]
    hard = load_protocol("hard-subjects")["test_subjects"]
    rows, per_subject, head, nodes, written, keys = [], None, None, [], [], []
    lopo_preds, hard_preds = {}, {}
    for run in runs:
        name = _balance_name(run)
        plan, node, pred = _run(run, protocol, progress)
        hplan, hnode, hpred = _run(run, "hard-subjects", progress)
        nodes += [node, hnode]
        keys += [node.key, hnode.key]
        head = head or common.header(plan, [])[:2]
        table = subject_table(pred, window)
        if per_subject is None:
            per_subject, hardest = table, table["subject"].head(10).tolist()
        else:
            per_subject[f"MAE ({name})"] = per_subject["subject"].map(table.set_index("subject")["MAE"])
        rho, p = spearmanr(table["support"], table["MAE"])
        err = (pred["pred_expected"] - pred["true_value"]).abs()
        ranks = table.set_index("subject")["rank"]
        rows.append({"balance": name, "LOPO MAE": M.mae_pooled(pred["true_value"], pred["pred_expected"]),
                     "MAE (fold mean)": M.mae_fold_mean(pred["true_value"], pred["pred_expected"], pred["fold"]),
                     "MAE, 10 hardest subjects": float(err[pred["subject"].isin(hardest)].mean()),
                     f"MAE, ages ≥ {SPARSE_AGE}": float(err[pred["true_value"] >= SPARSE_AGE].mean()),
                     "hard-subjects protocol MAE": M.mae_pooled(hpred["true_value"], hpred["pred_expected"]),
                     "Spearman ρ (support, MAE)": float(rho), "p": float(p),
                     f"LOPO ranks of {','.join(hard)}": ", ".join(str(int(ranks[s])) for s in hard if s in ranks)})
        lopo_preds[f"balance {name}"], hard_preds[name] = pred, (hpred, hnode)
    folder = Path(cfg["run"]["results_dir"]) / common.run_id("subjects", cfg, [keys, window, width])
    synthetic = "synthetic data" in head[0]
    train_ages = plan.tables[target].frame.loc[~plan.tables[target].frame["subject"].isin(hard), "age_lo"]
    head += [f"Stage {n.key}: {n.label} (protocol `{n.info['protocol']['name']}`)" for n in nodes]
    head.append(f"Hard-subjects protocol: test subjects {', '.join(hard)}; share of ages > 30 in training "
                f"{100 * (train_ages > 30).mean():.0f}%, in test {100 * (hpred['true_value'] > 30).mean():.0f}% "
                f"(thesis: 10% and more than 50%)")
    tables = {"settings": pd.DataFrame(rows), "subjects": per_subject}
    for i, (name, (hpred, hnode)) in enumerate(hard_preds.items()):
        binned, labels = age_bins(hpred, width)
        title = f"Hard subjects {', '.join(hard)}: true vs. predicted {width}-year age bins (balance {name})"
        written += figures.confusion(binned, labels, folder / "figures" / f"hard_subjects_{i}", title, synthetic)
        written.append(_confusion_table(binned, labels, folder / f"hard_subjects_{i}.md", title))
    written += figures.fold_mae(lopo_preds, folder / "figures" / "subject_mae", synthetic,
                                title=f"{target}: MAE per held-out subject (LOPO)")
    written += figures.error_vs_age(lopo_preds, folder / "figures" / "error_vs_age", synthetic)
    notes = [f"`support`: mean number of other subjects' images within ±{window} years of the subject's "
             "ages (its fold's training images near its ages). `MAE`: expected value, mean over the "
             "subject's images. Figures: `figures/hard_subjects_*` (thesis Figure 13, with "
             "`hard_subjects_*.md` for the counts, precision and recall), `figures/subject_mae`, "
             "`figures/error_vs_age`."]
    md = common.write_outputs(folder, f"Hard subjects and label distribution {folder.name}", head, tables,
                              settings, list(written), notes)
    return md, folder
