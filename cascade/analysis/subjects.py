"""`cascade analyse subjects`: which held-out subjects are hard under leave-one-person-out, and
whether the label distribution explains it (thesis section 6, "Variance in Prediction Error").

The thesis's hypothesis: a subject is hard when its ages are sparsely sampled among the other
subjects' images (the training set of its fold).  So for every subject this reports its MAE (the
expected value), its rank, and its *support*: the mean number of training images within
± `analyse.window` years of each of its ages, with the rank correlation of support and MAE.  It
then holds the hard subjects out together and trains on the rest — the thesis's subjects 002-005
(the `hard-subjects` protocol) and the `analyse.hard` hardest of this ranking (the thesis's
procedure, which on other data picks other subjects) — and writes the confusion matrix of true
vs. predicted age bins (`analyse.bin` years; thesis Figure 13).  With `balance.*` set (the
remedy the thesis names), the same is run without it too, one row per setting, so the remedy's
effect on the hard subjects is a number.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from cascade import metrics as M
from cascade.analysis import common
from cascade.protocols import load_protocol
from cascade.report import figures
from cascade.report.tables import confusion_table
from cascade.stages.execute import Runner
from cascade.store import stable_hash

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


def _run(cfg: dict, protocol: str, progress: bool, test_subjects: list[str] | None = None):
    """The full cascade's target under `protocol`, with the protocol's `test_subjects` replaced
    when given (the key follows): run what is missing, return (plan, node, predictions)."""
    cfg = copy.deepcopy(cfg)
    cfg["stages"][cfg["target"]]["protocol"] = protocol
    plan = common.full_plan(cfg)
    frame = plan.tables[cfg["target"]].frame
    if not (frame["age_lo"] == frame["age_hi"]).all():
        raise ValueError(f"analyse subjects needs exact ages; {cfg['target']} has age groups")
    node = plan.targets[0]
    if test_subjects is not None:
        info = copy.deepcopy(node.info)
        info["protocol"]["test_subjects"] = list(test_subjects)
        moved = dataclasses.replace(node, info=info, key=stable_hash(info))
        plan.nodes[plan.nodes.index(node)], plan.targets[0], node = moved, moved, moved
    Runner(plan, progress=progress).run()
    pred = pd.read_csv(plan.home / "stages" / node.key / "predictions.csv", dtype={"subject": str, "fold": str})
    return plan, node, pred


def _over_30(frame: pd.DataFrame, test: list[str]) -> str:
    """The thesis's check of a hard-subjects split: share of ages over 30 in training vs. test."""
    is_test = frame["subject"].isin(test)
    return (f"ages > 30: {100 * (frame.loc[~is_test, 'age_lo'] > 30).mean():.0f}% of training, "
            f"{100 * (frame.loc[is_test, 'age_lo'] > 30).mean():.0f}% of test images")


def analyse(cfg: dict, settings: list[str], progress: bool = True) -> tuple[str, Path]:
    target, window, width, k = (cfg["target"], cfg["analyse"]["window"], cfg["analyse"]["bin"],
                                cfg["analyse"]["hard"])
    protocol = cfg["stages"][target]["protocol"]
    if load_protocol(protocol)["splitter"] != "leave_one_group_out":
        raise ValueError(f"analyse subjects needs a leave-one-person-out target; {target} uses protocol "
                         f"{protocol!r} (set stages.{target}.protocol=lopo)")
    plain = copy.deepcopy(cfg)
    plain["balance"].update(weights="none", sampler="none")
    runs = [plain] if _balance_name(cfg) == "none" else [plain, cfg]
    thesis = [str(s) for s in load_protocol("hard-subjects")["test_subjects"]]
    rows, per_subject, head, nodes, measured = [], None, None, [], None
    lopo_preds, hard_runs = {}, []
    for run in runs:
        name = _balance_name(run)
        plan, node, pred = _run(run, protocol, progress)
        table = subject_table(pred, window)
        if per_subject is None:                      # the unbalanced run ranks the subjects
            per_subject, measured = table, table["subject"].head(k).tolist()
        else:
            per_subject[f"MAE ({name})"] = per_subject["subject"].map(table.set_index("subject")["MAE"])
        sets = {f"the measured hardest {k}": measured}
        if set(thesis) <= set(table["subject"]):      # the protocol's subjects exist (FG-NET's ids)
            sets = {"the thesis's subjects": thesis, **sets}
        row_hard, hard_nodes = {}, []
        for label, test in sets.items():
            _, hnode, hpred = _run(run, "hard-subjects", progress, test)
            hard_nodes.append(hnode)
            hard_runs.append((name, label, test, hpred))
            row_hard[f"MAE, {label[4:]} held out together"] = M.mae_pooled(hpred["true_value"],
                                                                           hpred["pred_expected"])
        nodes += [node, *hard_nodes]
        head = head or common.header(plan, [])[:2]
        rho, p = spearmanr(table["support"], table["MAE"])
        err = (pred["pred_expected"] - pred["true_value"]).abs()
        ranks = table.set_index("subject")["rank"]
        rows.append({"balance": name, "LOPO MAE": M.mae_pooled(pred["true_value"], pred["pred_expected"]),
                     "MAE (fold mean)": M.mae_fold_mean(pred["true_value"], pred["pred_expected"], pred["fold"]),
                     f"MAE, {k} hardest subjects": float(err[pred["subject"].isin(measured)].mean()),
                     f"MAE, ages ≥ {SPARSE_AGE}": float(err[pred["true_value"] >= SPARSE_AGE].mean()),
                     **row_hard, "Spearman ρ (support, MAE)": float(rho), "p": float(p),
                     f"LOPO ranks of {','.join(thesis)}": ", ".join(str(int(ranks[s])) for s in thesis if s in ranks)
                     or "–"})
        lopo_preds[f"balance {name}"] = pred
    folder = Path(cfg["run"]["results_dir"]) / common.run_id("subjects", cfg, [[n.key for n in nodes], window, width, k])
    synthetic = common.synthetic(plan)
    frame = plan.tables[target].frame
    head += [f"Stage {n.key}: {n.label} (protocol `{n.info['protocol']['name']}`"
             + (f", test subjects {', '.join(n.info['protocol']['test_subjects'])})"
                if "test_subjects" in n.info["protocol"] else ")") for n in nodes]
    head += [f"Held out together, {label} ({', '.join(test)}): {_over_30(frame, test)} (thesis, for 002-005 on the "
             f"real FG-NET: 10% of training, more than 50% of test)" for label, test in sets.items()]
    written = []
    for i, (name, label, test, hpred) in enumerate(hard_runs):
        binned, labels = age_bins(hpred, width)
        title = (f"{label[4:].capitalize()} ({', '.join(test)}) held out together:\n"
                 f"true vs. predicted age ({width}-year bins)\nbalance: {name}")
        written += figures.confusion(binned, labels, folder / "figures" / f"hard_subjects_{i}", title, synthetic)
        written.append(confusion_table(binned, labels, folder / f"hard_subjects_{i}.md", title.replace("\n", " ")))
    written += figures.fold_mae(lopo_preds, folder / "figures" / "subject_mae", synthetic,
                                title=f"{target}: MAE per held-out subject (LOPO)")
    written += figures.error_vs_age(lopo_preds, folder / "figures" / "error_vs_age", synthetic)
    notes = [f"`support`: mean number of other subjects' images within ±{window} years of the subject's "
             "ages (its fold's training images near its ages). `MAE`: expected value, mean over the "
             "subject's images. The hard subjects are held out together and trained on the rest twice: "
             "the thesis's subjects (the `hard-subjects` protocol) and the hardest "
             f"{k} of this LOPO ranking (the thesis's procedure). Figures: `figures/hard_subjects_*` "
             "(thesis Figure 13; `hard_subjects_*.md` for counts, precision and recall), "
             "`figures/subject_mae`, `figures/error_vs_age`."]
    md = common.write_outputs(folder, f"Hard subjects and label distribution {folder.name}", head,
                              {"settings": pd.DataFrame(rows), "subjects": per_subject}, settings, written, notes,
                              cfg=cfg)
    return md, folder
