"""`cascade` command line.  Settings are `key=value` words (see `cascade run --list-keys`).

    cascade run stage=imdb,agedb target=fgnet backbone=vgg16 [key=value ...] [--dry-run]
    cascade protocol NAME --jobs N [--backend dask --scheduler tcp://HOST:PORT] [key=value ...]
    cascade data synth --out DIR [--scale S] [--seed N]
    cascade data prepare NAME [key=value ...]
    cascade data inspect NAME [key=value ...] [--listing-only]
    cascade data sheet NAME [key=value ...] [--n 32] [--out FILE.png]   (random crops as a stage sees them)
    cascade data overlap A B [key=value ...] [--threshold BITS] [--out FILE.csv]
    cascade weights import FILE --format F --name N [--backbone B] [--preprocessing P] [--force]
    cascade report RUN [RUN ...]
    cascade html [RUN ...] [--results DIR]   (static report.html per results folder, results/index.html)
    cascade verify RUN [--home DIR] [--keep]   (rebuild a run's numbers from scratch and compare)
    cascade plan [key=value ...] [--gpu a100,h100] [--jobs 1,2,4,8]   (estimated CPU / GPU hours)
    cascade ensemble RUN RUN [RUN ...] [--stack] [--out DIR] [ensemble.hidden=32 ...]
    cascade compare RUN RUN [RUN ...] [--out DIR]   (runs side by side, paired tests, Friedman + CD)
    cascade study FILE.yaml [key=value ...] [--dry-run]   (backbones x targets from one file, one table per target)
    cascade tune [tune.stage=S] [key=value ...]
    cascade features STAGE [layer=last|first pooling=max|avg|none] [key=value ...]
    cascade predict STAGE PATH [PATH ...] [--out FILE.csv|.jsonl] [--faces central|all|given] [--annotate DIR]
    cascade export STAGE --format torchscript|onnx [--out FILE] [--opset N]
    cascade regress STAGE [STAGE ...] [engine=autosklearn|ridge|svr|gbr|rf protocol=lopo
                    modes=last:max,first:max,last:none folds=N] [--jobs N] [key=value ...]
    cascade regress --setup-engine autosklearn         (builds auto-sklearn's own environment once)
    cascade explain cam [cam.backbones=demo,...] [cam.target=class|expected] [cam.images=N] [key=value ...]
    cascade analyse subjects [analyse.window=K] [analyse.bin=B] [balance.sampler=oversample ...]
    cascade analyse groups [key=value ...]
    cascade analyse distributions [key=value ...]
    cascade doctor [key=value ...]    (libraries, devices, data, weights, disk a run needs; exit 0: it can start)

STAGE is `pretrained` (the face-recognition weights) or a cascade prefix such as `imdb,agedb`;
predict and export take a trained prefix, or a target with --fit-all (fitted on all its images).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable

from cascade import config as C
from cascade.analysis import ANALYSES, analysis_of
from cascade.regress.engine_env import EngineError
from cascade.stages import FoldsFailed

#: Short settings of `features` / `regress` (`layer=first` is `features.layer=first`).
SHORT = {"layer": "features.layer", "pooling": "features.pooling", "engine": "regress.engine",
         "protocol": "regress.protocol", "modes": "regress.modes", "folds": "regress.folds"}


def _parser() -> argparse.ArgumentParser:
    from cascade.models.importers import IMPORTERS
    from cascade.predict.faces import FACES

    p = argparse.ArgumentParser(prog="cascade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the stage graph pretrained -> stages -> target and print the table")
    run.add_argument("settings", nargs="*", metavar="key=value")
    run.add_argument("--dry-run", action="store_true", help="print every stage, its key and status; run nothing")
    run.add_argument("--list-keys", action="store_true", help="print every setting and its current value")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    proto = sub.add_parser("protocol", help="run the target under protocol NAME (lopo, adience, holdout, ...)")
    proto.add_argument("name")
    proto.add_argument("settings", nargs="*", metavar="key=value")
    proto.add_argument("--jobs", type=int, help="folds trained in parallel (default: one per core)")
    proto.add_argument("--backend", choices=["auto", "fork", "loky", "dask"],
                       help="local processes: forked when safe (auto, the default), fork or loky; or a dask cluster")
    proto.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://HOST:8786")
    proto.add_argument("--dry-run", action="store_true")
    proto.add_argument("--quiet", action="store_true")

    data = sub.add_parser("data", help="datasets: synth | prepare | inspect | sheet | overlap")
    dsub = data.add_subparsers(dest="action", required=True)
    synth = dsub.add_parser("synth", help="write the synthetic face-aging suite in the real formats")
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--scale", type=float, default=1.0)
    synth.add_argument("--seed", type=int, default=0)
    for action, text in (("prepare", "decode, crop and cache a dataset's images"),
                         ("inspect", "counts, age histogram, images per subject, cleaning report")):
        a = dsub.add_parser(action, help=text)
        a.add_argument("name", help="dataset: " + ", ".join(__import__("cascade.data.datasets", fromlist=["x"]).DATASETS))
        a.add_argument("settings", nargs="*", metavar="key=value")
        if action == "inspect":
            a.add_argument("--listing-only", action="store_true",
                           help="read the metadata only; do not require the image files")

    sh = dsub.add_parser("sheet", help="a PNG of random crops as a stage sees them, with ages and quarantined rows")
    sh.add_argument("name", help="dataset: " + ", ".join(__import__("cascade.data.datasets", fromlist=["x"]).DATASETS))
    sh.add_argument("settings", nargs="*", metavar="key=value")
    sh.add_argument("--n", type=int, default=32, help="crops drawn (default 32)")
    sh.add_argument("--out", type=Path, help="PNG to write (default: <run.results_dir>/sheets/NAME-CROP-SIZEpx.png)")

    ov = dsub.add_parser("overlap", help="people and photos two datasets share, and each one's duplicate photos")
    ov.add_argument("a", help="dataset")
    ov.add_argument("b", help="dataset")
    ov.add_argument("settings", nargs="*", metavar="key=value")
    ov.add_argument("--threshold", type=int, default=None,
                    help="most differing pHash bits (of 64) for two photos to count as one "
                         "(default: data.overlap.hamming, 8)")
    ov.add_argument("--out", type=Path, help="also write every finding to this CSV file")

    w = sub.add_parser("weights", help="weights import FILE --format F --name N (convert once to safetensors)")
    w.add_argument("action", choices=["import"])
    w.add_argument("file", type=Path)
    w.add_argument("--format", required=True, choices=list(IMPORTERS),
                   help="what FILE is: " + ", ".join(IMPORTERS) + " (docs/backbones-and-weights.md says which file is which)")
    w.add_argument("--name", required=True)
    w.add_argument("--backbone", default=None, help="registry name (default: guessed from --name / the file name)")
    w.add_argument("--force", action="store_true", help="replace a file of that name made from another source")
    w.add_argument("--preprocessing", default=None,
                   help="backbone | imagenet | vggface2-bgr | vggface2-rgb | vggface-rgb | JSON (default: the format's)")
    f = sub.add_parser("features", help="pooled CNN features of a stage (layer=last|first pooling=max|avg|none)")
    f.add_argument("settings", nargs="+", metavar="STAGE | key=value")
    f.add_argument("--quiet", action="store_true")
    pr = sub.add_parser("predict", help="ages of the faces in your photographs from a trained stage: one row per "
                                        "face with intervals (CSV + FILE.json, or JSON Lines with a header record)")
    pr.add_argument("settings", nargs="+", metavar="STAGE PATH [PATH ...] | key=value")
    pr.add_argument("--out", type=Path, default=Path("predictions.csv"), help="FILE.csv or FILE.jsonl "
                                                                               "(default predictions.csv)")
    pr.add_argument("--faces", choices=FACES, default="central",
                    help="MTCNN's central face (default), every face, or the files as given face crops")
    pr.add_argument("--annotate", type=Path, metavar="DIR", help="write the photographs with boxes and ages here")
    pr.add_argument("--fit-all", action="store_true", help="STAGE is a target, fitted on all its images")
    pr.add_argument("--quiet", action="store_true")
    xp = sub.add_parser("export", help="a trained stage as one TorchScript / ONNX file, preprocessing built in "
                                       "(uint8 RGB crops in; probabilities, expected age out) + FILE.json")
    xp.add_argument("settings", nargs="+", metavar="STAGE | key=value")
    xp.add_argument("--format", required=True, choices=["torchscript", "onnx"])
    xp.add_argument("--out", type=Path, help="the model file (default: <stage>-<key>.pt|.onnx here)")
    xp.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    xp.add_argument("--fit-all", action="store_true", help="STAGE is a target, fitted on all its images")
    xp.add_argument("--quiet", action="store_true")
    r = sub.add_parser("regress", help="regressors on pooled features under a protocol (engine=autosklearn|ridge|...)")
    r.add_argument("settings", nargs="*", metavar="STAGE | key=value")
    r.add_argument("--jobs", type=int, help="folds fitted in parallel (default: one per core)")
    r.add_argument("--setup-engine", choices=["autosklearn"],
                   help="build auto-sklearn's own environment (once; then exit unless STAGEs are given)")
    r.add_argument("--quiet", action="store_true")
    rep = sub.add_parser("report", help="tables and figures of finished runs -> results/<run-id>/")
    rep.add_argument("runs", nargs="+")
    ht = sub.add_parser("html", help="static HTML pages of results folders: report.html in each, and with no "
                                     "FOLDER every folder under --results plus its index.html")
    ht.add_argument("folders", nargs="*", type=Path, metavar="FOLDER", help="results/<run-id> folders")
    ht.add_argument("--results", type=Path, default=Path("results"),
                    help="the folder of results folders, used when no FOLDER is given (default results)")
    ver = sub.add_parser("verify", help="rebuild a `cascade run` results folder from scratch and compare its numbers")
    ver.add_argument("run", type=Path)
    ver.add_argument("--home", type=Path, help="store to rebuild in, kept (default: a temporary one, removed)")
    ver.add_argument("--keep", action="store_true", help="keep the temporary store and its rebuilt folder")
    ver.add_argument("--tolerance", type=float, default=1.0,
                     help="on another environment, how far a configuration's first metric may move where the "
                          "table has no 95%% CI for it (its unit; default 1.0)")
    ver.add_argument("--quiet", action="store_true")
    pl = sub.add_parser("plan", help="estimated cost of a run: FLOPs, GPU-hours per GPU class, CPU hours vs --jobs")
    pl.add_argument("settings", nargs="*", metavar="key=value")
    pl.add_argument("--gpu", default="", help="GPU classes to price (default: every class of plan.gpus)")
    pl.add_argument("--jobs", default="1,2,4,8", help="fold-parallel job counts to price on this CPU")
    pl.add_argument("--no-measure", action="store_true", help="skip timing this CPU (FLOPs and GPU-hours only)")
    pl.add_argument("--devices", type=int, default=0,
                    help="GPUs the run will have (default: those visible here, at least 1)")
    pl.add_argument("--as-is", action="store_true",
                    help="price datasets read from the demo suite as they are (default: at their published sizes)")
    e = sub.add_parser("ensemble", help="average the class probabilities of finished runs (same test images)")
    e.add_argument("runs", nargs="+", metavar="RUN", help="results/<run-id> folders of `cascade run`, and "
                                                          "key=value settings of the meta-model (ensemble.*)")
    e.add_argument("--out", type=Path, default=Path("results"), help="where results/<ensemble-id>/ goes")
    e.add_argument("--stack", action="store_true",
                   help="also a stacked MLP meta-model trained on the members' validation predictions")
    cmp = sub.add_parser("compare", help="finished runs side by side on the same test images: paired tests "
                                         "against the first, Friedman + critical-difference figure for three or more")
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="results/<run-id> folders of `cascade run`")
    cmp.add_argument("--out", type=Path, default=Path("results"), help="where results/compare-<id>/ goes")
    st = sub.add_parser("study", help="a study file's backbones x targets, each a cascade run, then one table per "
                                      "target with paired tests and the critical-difference figure")
    st.add_argument("file", type=Path, help="study YAML (configs/studies/thesis.yaml)")
    st.add_argument("settings", nargs="*", metavar="key=value")
    st.add_argument("--dry-run", action="store_true", help="check every cell and print its stages; run nothing")
    t = sub.add_parser("tune", help="the thesis's grid search over lr x batch size for a stage")
    t.add_argument("settings", nargs="*", metavar="key=value")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    ex = sub.add_parser("explain", help="explain cam: Grad-CAM of face-recognition vs. fine-tuned models (thesis Fig. 14)")
    ex.add_argument("what", choices=["cam"])
    ex.add_argument("settings", nargs="*", metavar="key=value")
    ex.add_argument("--quiet", action="store_true", help="no progress bars")
    an = sub.add_parser("analyse", help="analyses of thesis section 6: subjects | groups | distributions")
    an.add_argument("what", choices=["subjects", "groups", "distributions"])
    an.add_argument("settings", nargs="*", metavar="key=value")
    an.add_argument("--quiet", action="store_true", help="no progress bars")
    doc = sub.add_parser("doctor", help="check the libraries, devices, data, weights and disk the configured run "
                                        "needs, each problem with its fix; writes nothing; exit 0 when it can start")
    doc.add_argument("settings", nargs="*", metavar="key=value")
    for command in [*sub.choices.values(), *dsub.choices.values()]:      # --quiet everywhere
        if command is not data and not any("--quiet" in a.option_strings for a in command._actions):
            command.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def cmd_analysis(module: str, entry: str, settings: list[str], quiet: bool) -> int:
    """Run `cascade.analysis.<module>.<entry>(cfg, settings, progress)` (it trains what it needs),
    print its tables and where they were written."""
    import importlib

    run = getattr(importlib.import_module(f"cascade.analysis.{module}"), entry)
    md, folder = run(_load(settings), settings, progress=not quiet)
    print(md)
    print(f"written to {folder}/")
    return 0


def next_steps(folder: Path, cfg: dict) -> str:
    """What a finished run says after its table: the commands that rebuild it, compare it with
    another run and go further from the same stages."""
    chain = ",".join(cfg["stage"])
    return (f"next: cascade report {folder}    (rebuild its tables and figures from the store)\n"
            f"      cascade compare {folder} results/<another run>    (side by side, paired tests)\n"
            f"      cascade regress pretrained{' ' + chain if chain else ''} | cascade analyse subjects    "
            f"(with this run's settings: regressors on its features; thesis section 6)")


@dataclasses.dataclass
class RunPlan:
    """A `cascade run` planned and not yet trained: its settings words (a settings file's words in
    place of its path: run.json records them), its configuration and one plan per seed.  While the
    demo suite the stage keys hash is not generated (a dry run generates nothing) there are no
    plans, and `waiting` labels the nodes that will run."""
    settings: list[str]
    cfg: dict
    plans: list
    waiting: list[str]


def plan_run(settings: list[str], dry_run: bool, say: Callable[[str], object]) -> RunPlan:
    """The stage graph of `cascade run`, each node's key, label and status handed to `say` line by
    line (the command prints them; the Python API, cascade.api, keeps them): one path for both."""
    from cascade.data.datasets import DemoSuiteMissing
    from cascade.report.tables import mixed_data_line
    from cascade.stages import plan as P

    settings = C.expand(settings)
    cfg = _load(settings)
    try:
        plans = [P.build(c, generate=not dry_run) for c in C.per_seed(cfg)]
    except DemoSuiteMissing as exc:      # a dry run writes nothing: no keys without the data
        if mixed := mixed_data_line(cfg):
            say(mixed)
        stages = tuple(cfg["stage"])
        waiting = [P.chain_label(stages[:i]) for i in range(1, len(stages) + 1)] + \
                  [P.chain_label(c, cfg["target"]) for c in P.target_chains(cfg)]
        say(f"plan ({C.cascade_home(cfg)}): {exc}; the stage keys hash the data, so they are known once it "
            f"is (a run generates it first). Every node will run:")
        for label in waiting:
            say(f"  {'(no key yet)':16s}  {label}")
        say("estimate: waits for the data (it counts the images; `cascade plan` generates the demo suite and gives it)")
        return RunPlan(settings, cfg, [], waiting)
    say(f"plan ({C.cascade_home(cfg)}):")
    for plan in plans:
        if len(plans) > 1:
            say(f" seed {plan.cfg['seed']}:")
        for node in plan.nodes:
            say(f"  {node.key}  {node.label:<45} {P.status(plan, node)}")
    if mixed := mixed_data_line(cfg):
        say(mixed)
    return RunPlan(settings, cfg, plans, [])


def finish_run(run: RunPlan, progress: bool, say: Callable[[str], object]) -> Path:
    """Train what `run`'s plans miss and write their results folder (returned), the table and the
    next commands handed to `say`: the rest of `cascade run`, and of the Python API's run."""
    from cascade.report.tables import run_and_write
    from cascade.stages import estimate

    if progress:
        say(estimate.start_line(run.plans))
    md, folder = run_and_write(run.plans, Path(run.cfg["run"]["results_dir"]), run.settings, progress)
    say("")
    say(md)
    say(f"written to {folder}/")
    say(next_steps(folder, run.cfg))
    return folder


def cmd_run(settings: list[str], dry_run: bool, quiet: bool, list_keys: bool = False) -> int:
    from cascade.stages import estimate

    if list_keys:
        print("\n".join(C.list_keys(_load(C.expand(settings)))))
        return 0
    run = plan_run(settings, dry_run, print)
    if not run.plans:
        return 0
    if dry_run:
        print(estimate.dry_run_text(run.plans))
        return 0
    finish_run(run, not quiet, print)
    return 0


def _load(settings: list[str]) -> dict:
    """The merged settings of a command, and this process set up for their CPU numerics
    (`train.numerics`), which must happen before anything computes."""
    from cascade import runtime

    cfg = C.load(settings)
    runtime.numerics(cfg["train"]["numerics"])
    return cfg


def _stages_and_settings(words: list[str]) -> tuple[list[str], list[str]]:
    """STAGE words and key=value settings in any order; the short names in SHORT expanded."""
    stages = [w for w in words if "=" not in w]
    settings = [w for w in words if "=" in w]
    return stages, [SHORT.get(w.split("=", 1)[0], w.split("=", 1)[0]) + "=" + w.split("=", 1)[1] for w in settings]


def cmd_study(path: Path, words: list[str], dry_run: bool, quiet: bool) -> int:
    """Every cell of a study file (backbones x targets), checked before anything trains, run as
    `cascade run` runs them, then one comparison table per target (cascade/study.py)."""
    from cascade import study as S
    from cascade.data.datasets import DemoSuiteMissing
    from cascade.report.across_runs import compare_runs
    from cascade.report.tables import run_and_write
    from cascade.stages import plan as P

    name = S.read(path)["name"]
    built, problems = [], []
    for target, backbone, settings in S.cells(path, C.expand(words)):
        try:
            plans = [P.build(c, generate=not dry_run) for c in C.per_seed(_load(settings))]
        except DemoSuiteMissing:
            print(f"study {name}: the demo suite is not generated yet, so no keys are known; a run generates "
                  f"it first. Cells: " + ", ".join(f"{b} ⇒ {t}" for t, b, _ in S.cells(path, C.expand(words))))
            return 0
        except (C.ConfigError, FileNotFoundError, ValueError) as exc:
            problems.append(f"{backbone} ⇒ {target}: {exc}")
            continue
        built.append((target, backbone, settings, plans))
    if problems:
        raise C.ConfigError(f"study {name} cannot start:\n" + "\n".join(f"  - {p}" for p in problems))
    keys = [n.key for *_, plans in built for p in plans for n in p.nodes if n.kind != "root"]
    print(f"study {name}: {len(built)} cells, {len(keys)} trained nodes, {len(set(keys))} distinct "
          f"(a node shared between cells trains once)")
    for target, backbone, _, plans in built:
        print(f" {backbone} ⇒ {target}:")
        for plan in plans:
            for node in plan.nodes:
                print(f"  {node.key}  {node.label:<45} {P.status(plan, node)}" + (f"  seed {plan.cfg['seed']}" if len(plans) > 1 else ""))
    if dry_run:
        print("(dry run: nothing trained; `cascade plan <the file's settings> backbone=B target=T` prices a cell)")
        return 0
    folders: dict[str, list[Path]] = {}
    for target, backbone, settings, plans in built:
        _, folder = run_and_write(plans, Path(plans[0].cfg["run"]["results_dir"]), settings, not quiet)
        folders.setdefault(target, []).append(folder)
        print(f"{backbone} ⇒ {target}: {folder}/")
    for target, runs in folders.items():
        out = Path(built[0][3][0].cfg["run"]["results_dir"])
        md, folder = compare_runs(runs, out, every_configuration=True, run_id=S.study_id(name, target, runs),
                                  title=f"Study {name}")
        print()
        print(md)
        print(f"written to {folder}/")
    return 0


def cmd_plan(settings: list[str], gpus: str, jobs: str, measure: bool, devices: int = 0, as_is: bool = False) -> int:
    """Estimated cost of the run the settings describe, before running it: without its weight
    file (the weights do not change the cost) and, for datasets read from the demo suite, at
    their published sizes unless `as_is`."""
    from cascade.models import weights as W
    from cascade.stages import estimate
    from cascade.stages import plan as P

    cfg = _load(C.expand(settings))
    peak = cfg["plan"]["gpus"]
    names = [g.strip() for g in gpus.split(",") if g.strip()] or list(peak)
    unknown = [g for g in names if g not in peak]
    if unknown:
        raise C.ConfigError(f"--gpu {','.join(unknown)}: unknown; valid: {', '.join(peak)} (add one: plan.gpus.NAME=TFLOPS)")
    try:
        job_counts = [int(j) for j in jobs.split(",")]
    except ValueError:
        raise C.ConfigError(f"--jobs {jobs!r}: expected comma-separated integers") from None
    try:
        W.resolve(cfg["weights"], C.backbone_settings(cfg)["weights"], C.cascade_home(cfg))
    except (FileNotFoundError, ValueError) as exc:
        print(f"weights: {str(exc).split(' — ')[0]}; priced with the architecture alone (the cost does not "
              "depend on the weights)")
        cfg = _load(C.expand(settings) + ["weights=none"])
    plan = P.build(cfg)
    from cascade.stages.placement import gpu_count
    est = estimate.estimate(plan, job_counts, names, measure, devices or max(1, gpu_count()), published=not as_is)
    print(estimate.plan_text(est, cfg["backbone"]))
    return 0


def cmd_features(words: list[str], quiet: bool) -> int:
    from cascade.regress.features import Mode, extract
    from cascade.regress.run import stage_extractor
    from cascade.runtime import device

    stages, settings = _stages_and_settings(words)
    if len(stages) != 1:
        raise C.ConfigError(f"cascade features takes one STAGE (pretrained or a chain like imdb,agedb); got {stages}")
    cfg = _load(settings)
    _, node, model, cache = stage_extractor(cfg, stages[0], not quiet)
    f = cfg["features"]
    feats = extract(model, cache, Mode(f["layer"], f["pooling"]), node.key, node.label, C.cascade_home(cfg),
                    device(cfg), f["batch_size"], f["max_gb"], not quiet, cfg["train"]["numerics"])
    print(f"{node.label} [{f['layer']}:{f['pooling']}]: features {tuple(feats.array.shape)} of "
          f"{feats.meta['dataset']} at {feats.path}/features.npy (rows in index.csv)")
    return 0


def default_name(spec: str, stage, fit_all: bool) -> str:
    """`imdb-agedb-<key prefix>`: a file name that says which stage and which key."""
    return f"{spec.replace(',', '-')}{'-all' if fit_all else ''}-{stage.key[:8]}"


def cmd_export(words: list[str], fmt: str, out: Path | None, opset: int | None, fit_all: bool, quiet: bool) -> int:
    """A trained stage as one TorchScript / ONNX file with its sidecar (cascade.export)."""
    from cascade.export import DEFAULT_OPSET, FORMATS, check_out, export
    from cascade.stages.trained import trained_stage

    if opset is not None and fmt != "onnx":
        raise C.ConfigError("--opset is an ONNX setting; drop it for --format torchscript")
    if out is not None:
        check_out(out, fmt)
    stages, settings = _stages_and_settings(words)
    if len(stages) != 1:
        raise C.ConfigError(f"cascade export takes one STAGE (a chain like imdb,agedb, or a target with "
                            f"--fit-all); got {stages}")
    cfg, spec = _load(C.expand(settings)), stages[0]
    stage = trained_stage(cfg, spec, not quiet, fit_all)
    out = out or Path(default_name(spec, stage, fit_all) + FORMATS[fmt])
    meta = export(stage, fmt, out, opset or DEFAULT_OPSET, cfg["data"]["margin"])
    print(f"{stage.label} (stage {stage.key}) exported as {fmt}: {out} ({out.stat().st_size / 1e6:.1f} MB, "
          f"sha256 {meta['sha256'][:16]}...) + {out.with_suffix('.json').name}")
    print(f"input: uint8 RGB crops (N, {stage.size}, {stage.size}, 3), cut as {meta['face_crop']}; "
          f"outputs: probabilities (N, {len(stage.labels)}) over ages {stage.labels.lo[0]}-{stage.labels.hi[-1]}, "
          f"expected_age (N,)")
    if fmt == "torchscript":
        print(f"note: torch {meta['torch']} marks TorchScript (torch.jit) deprecated; the file loads with "
              f"torch.jit.load, and --format onnx is the portable one")
    return 0


def predict_files(given: list[str], settings: list[str], out: Path | None, faces: str, annotate: Path | None,
                  fit_all: bool, progress: bool) -> tuple:
    """`cascade predict`'s work, shared with the Python API (cascade.api.predict): the STAGE
    (`given[0]`, trained first where the store lacks it) applied to the PATHs (`given[1:]`);
    returns the stage, one row per face (per file where there is none) and the files written to
    `out` (none when `out` is None).  `out`'s format is checked before any training."""
    from cascade.predict import writers
    from cascade.predict.run import header, predict
    from cascade.predict.sources import image_files
    from cascade.stages.trained import trained_stage

    if len(given) < 2:
        raise C.ConfigError(f"cascade predict takes a STAGE and at least one PATH (image files or folders); "
                            f"got {given}")
    if out is not None:
        writers.check_out(out)
    cfg = _load(C.expand(settings))
    stage = trained_stage(cfg, given[0], progress, fit_all)
    rows = predict(stage, image_files([Path(p) for p in given[1:]]), faces, cfg, annotate, progress)
    files = writers.write(rows, header(stage, faces, cfg, settings, rows), out) if out is not None else []
    return stage, rows, files


def cmd_predict(words: list[str], out: Path, faces: str, annotate: Path | None, fit_all: bool,
                quiet: bool) -> int:
    """Ages of the faces in the PATHs from a trained stage (cascade.predict), written to `out`."""
    from cascade.predict.run import row_text

    settings = [w for w in words if "=" in w and not Path(w).exists()]     # a path may hold "=" too
    given = [w for w in words if w not in settings]
    stage, rows, files = predict_files(given, settings, out, faces, annotate, fit_all, not quiet)
    for row in rows[:8]:
        print("  " + row_text(row))
    if len(rows) > 8:
        print(f"  ... {len(rows) - 8} more rows")
    faced = sum(r["reason"] is None for r in rows)
    problems = len(rows) - faced
    print(f"{stage.label} (stage {stage.key}): {len({r['file'] for r in rows})} files, {faced} faces, {problems} "
          f"{'row' if problems == 1 else 'rows'} with a reason; written to {' + '.join(map(str, files))}"
          + (f"; annotated photographs in {annotate}/" if annotate else ""))
    return 0


def cmd_regress(words: list[str], jobs: int | None, setup_engine: str | None, quiet: bool,
                out_dir: Path | None = None) -> int:
    """Regressors on pooled features of each STAGE under the target's protocol (thesis Table 5)."""
    from cascade.regress import engine_env
    from cascade.regress.run import regress
    from cascade.report import regression

    stages, settings = _stages_and_settings(words)
    cfg = _load(settings + ([f"jobs={jobs}"] if jobs is not None else []))
    if setup_engine:
        print(f"auto-sklearn environment ready at {engine_env.setup(cfg, quiet=quiet)}")
        if not stages:
            return 0
    if not stages:
        raise C.ConfigError("cascade regress needs at least one STAGE (pretrained, or a chain like imdb,agedb)")
    table, header, details, synthetic = regress(cfg, stages, progress=not quiet)
    md, folder = regression.write(cfg, table, header, details,
                                  out_dir or Path(cfg["run"]["results_dir"]), words, synthetic)
    print(md)
    print(f"written to {folder}/")
    return 0


def cmd_report(runs: list[str]) -> int:
    """Rebuild the tables and figures of finished runs from their run.json (the settings they
    were made with) and the stage store; nothing is trained."""
    from cascade.report import regression, run_record
    from cascade.report.tables import finished_plans, write_run

    for run in runs:
        folder = Path(run)
        ens = run_record(folder)
        words = regression.words_of(folder)
        if words is not None:                  # every fold is stored: this refits nothing
            cmd_regress(words, None, None, True, folder.parent)
            continue
        analysis = analysis_of(folder.name, ens)
        if analysis:                           # an analysis: run again (its stages are in the store)
            cmd_analysis(*analysis, ens["settings"], True)
            continue
        if ens.get("command") == "ensemble":
            from cascade.ensemble import ensemble
            ensemble(ens["runs"], folder.parent, ens.get("stacked", False),
                     ens.get("meta_model") or C.defaults()["ensemble"])
            print(f"{run}: rebuilt")
            continue
        if ens.get("command") in ("compare", "study"):
            from cascade.report.across_runs import compare_runs
            study = ens["command"] == "study"
            compare_runs(ens["runs"], folder.parent, study, folder.name if study else None, ens.get("title", ""))
            print(f"{run}: rebuilt")
            continue
        _, out = write_run(finished_plans(folder), folder.parent, ens["settings"])
        print(f"{run}: tables and figures written to {out}/")
    return 0


def cmd_html(folders: list[Path], results: Path) -> int:
    """Static HTML pages read from the folders' files (nothing is rebuilt): the named folders'
    report.html, or with none every folder under `results` and its index.html."""
    from cascade.report import html

    for path in html.write(folders) if folders else html.write_all(results):
        print(f"written {path}")
    return 0


def _data_overlap(args) -> int:
    """`cascade data overlap A B`: both datasets opened and cached as a run opens them (the run's
    backbone input size and crop rule), then audited."""
    from cascade.data.cache import prepare
    from cascade.data.datasets import DATASETS, crop_settings, open_dataset
    from cascade.data.overlap import audit
    from cascade.stages.leakage import face_model

    cfg = _load(args.settings)
    for name in (args.a, args.b):
        if name not in DATASETS:
            raise C.ConfigError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    home = C.cascade_home(cfg)
    size = C.backbone_settings(cfg)["input_size"]
    caches = [prepare(t, size, crop_settings(cfg, t), home) for t in (open_dataset(cfg, n, home) for n in (args.a, args.b))]
    rule = cfg["data"]["overlap"]
    hamming = rule["hamming"] if args.threshold is None else args.threshold
    face = face_model(cfg)
    report = audit(*caches, (DATASETS[args.a][0], DATASETS[args.b][0]), home, hamming, rule["colour"], face=face)
    print(f"{args.a}: {len(caches[0])} images, {args.b}: {len(caches[1])} images, crops {size} px; same photo: "
          f"pHash within {hamming} bits of 64 and 8x8 colours within {rule['colour']}"
          + (f"; same face: {face.backbone} embeddings at cosine >= {face.cosine:g}" if face else ""))
    print(report.summary())
    if args.out:
        report.to_frame().to_csv(args.out, index=False)
        print(f"findings written to {args.out}")
    return 0


def cmd_data(args) -> int:
    if args.action == "synth":
        from cascade.data.synth.suite import write_suite

        counts = write_suite(args.out, scale=args.scale, seed=args.seed)
        print(f"synthetic suite written to {args.out}: {counts}")
        return 0
    if args.action == "overlap":
        return _data_overlap(args)
    from cascade.data.datasets import DATASETS, crop_settings, open_dataset

    cfg = _load(args.settings)
    if args.name not in DATASETS:
        raise C.ConfigError(f"unknown dataset {args.name!r}; valid: {', '.join(DATASETS)}")
    table = open_dataset(cfg, args.name, C.cascade_home(cfg),
                         require_files=not getattr(args, "listing_only", False))
    if args.action == "sheet":
        from cascade.data.sheet import write_sheet

        size, crop = C.backbone_settings(cfg)["input_size"], crop_settings(cfg, table)
        aug = cfg["augment"] if C.stage_params(cfg, args.name, "full").get("augment", True) else None
        out = args.out or Path(cfg["run"]["results_dir"]) / "sheets" / f"{args.name}-{crop['mode']}-{size}px.png"
        png, counts = write_sheet(table, crop, size, aug, out, args.n, cfg["split_seed"])
        print(table.report.summary())
        print(f"sheet written to {png}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    if args.action == "prepare":
        from cascade.data.cache import prepare

        cache = prepare(table, C.backbone_settings(cfg)["input_size"], crop_settings(cfg, table),
                        C.cascade_home(cfg))
        print(f"{args.name}: {len(cache)} images cached at {cache.path}")
    print(table.report.summary())
    if args.action == "inspect":
        f = table.frame
        print(f"images {len(f)}, subjects {f['subject'].nunique()}, synthetic={table.synthetic}, "
              f"crop {crop_settings(cfg, table)}")
        print("images per subject:", f.groupby("subject").size().describe().round(1).to_dict())
        bins = (f["age_lo"] // 10 * 10).value_counts().sort_index()
        print("age histogram (decades, by the label's lower bound):")
        for lo, n in bins.items():
            print(f"  {int(lo):3d}-{int(lo) + 9:<3d} {n:6d} {'#' * int(60 * n / bins.max())}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting `key=value` settings and flags come in any order (`run --dry-run a=b c=d`)."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and (not hasattr(args, "settings") or any(r.startswith("-") for r in rest)):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.settings = list(args.settings) + rest
    return args


def main(argv: list[str] | None = None) -> int:
    from cascade import progress

    args = _parse(argv)
    progress.silence(bool(getattr(args, "quiet", False)))
    try:
        if args.command == "run":
            return cmd_run(args.settings, args.dry_run, args.quiet, args.list_keys)
        if args.command == "protocol":
            cfg = _load(args.settings)
            extra = [f"stages.{cfg['target']}.protocol={args.name}"]
            extra += [f"jobs={args.jobs}"] if args.jobs is not None else []
            extra += [f"backend={args.backend}"] if args.backend else []
            extra += [f"scheduler={args.scheduler}"] if args.scheduler else []
            return cmd_run(args.settings + extra, args.dry_run, args.quiet)
        if args.command == "data":
            return cmd_data(args)
        if args.command == "report":
            return cmd_report(args.runs)
        if args.command == "html":
            return cmd_html(args.folders, args.results)
        if args.command == "verify":
            from cascade.verify import verify
            verdict = verify(args.run, args.home, args.keep, args.tolerance, progress=not args.quiet)
            print(verdict.text())
            return 0 if verdict.ok else 1
        if args.command == "study":
            return cmd_study(args.file, args.settings, args.dry_run, args.quiet)
        if args.command == "plan":
            return cmd_plan(args.settings, args.gpu, args.jobs, not args.no_measure, args.devices, args.as_is)
        if args.command == "ensemble":
            from cascade.ensemble import ensemble
            settings = [w for w in args.runs if "=" in w]
            runs = [w for w in args.runs if "=" not in w]
            md, folder = ensemble(runs, args.out, args.stack, _load(C.expand(settings))["ensemble"])
            print(md)
            print(f"written to {folder}/")
            return 0
        if args.command == "compare":
            from cascade.report.across_runs import compare_runs
            md, folder = compare_runs(args.runs, args.out)
            print(md)
            print(f"written to {folder}/")
            return 0
        if args.command == "weights":
            from cascade.models.importers import import_weights, parse_preprocessing

            home = C.cascade_home(_load([]))
            pre = parse_preprocessing(args.preprocessing, args.backbone) if args.preprocessing else None
            out = import_weights(args.file, args.format, args.name, args.backbone, home,
                                 force=args.force, preprocessing=pre)
            print(f"written {out} (+ {out.with_suffix('.json').name})")
            return 0
        if args.command == "tune":
            from cascade.stages.tune import tune

            _, folder = tune(_load(args.settings), progress=not args.quiet)
            print((folder / "table.md").read_text())
            print(f"written to {folder}/")
            return 0
        if args.command == "features":
            return cmd_features(args.settings, args.quiet)
        if args.command == "predict":
            return cmd_predict(args.settings, args.out, args.faces, args.annotate, args.fit_all, args.quiet)
        if args.command == "export":
            return cmd_export(args.settings, args.format, args.out, args.opset, args.fit_all, args.quiet)
        if args.command == "regress":
            return cmd_regress(args.settings, args.jobs, args.setup_engine, args.quiet)
        if args.command == "explain":
            return cmd_analysis(*ANALYSES["cam"], args.settings, args.quiet)
        if args.command == "analyse":
            return cmd_analysis(args.what, "analyse", args.settings, args.quiet)
        if args.command == "doctor":
            from cascade.doctor import doctor
            text, ok = doctor(args.settings)
            print(text)
            return 0 if ok else 1
        raise AssertionError(f"unhandled command {args.command}")
    except (C.ConfigError, FileNotFoundError, ValueError, EngineError) as exc:
        print(f"cascade: error: {exc}", file=sys.stderr)
        return 2
    except FoldsFailed as exc:
        print(f"cascade: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        from cascade.store import NO_SPACE
        if exc.errno not in NO_SPACE:
            raise
        print(f"cascade: error: {exc}", file=sys.stderr)     # names the file (cascade.store)
        return 1


if __name__ == "__main__":
    sys.exit(main())
