"""The per-run leakage audit and data.exclude_overlap: on the demo suite, whose planted
overlaps (cascade.data.synth.suite.planted) are the ground truth, every audit finds exactly
them; excluding them changes the keys and is counted; the results folder says what was found."""
import json

import numpy as np
import pandas as pd
import pytest
from conftest import FAST

from cascade import config as C
from cascade.data.synth.suite import planted
from cascade.stages import plan as P
from cascade.stages.leakage import leakage

#: The demo backbone's own crop size (the tests' FAST settings shrink it to 16 px, where every
#: synthetic face looks alike to a perceptual hash; the audit is specified at the real size).
CROPS = ["backbones.demo.input_size=40"]
MAIN = ["stage=imdb,agedb", "target=fgnet"]


def _plan(home, *extra):
    return P.build(C.load(FAST + CROPS + MAIN + [f"home={home}", *extra]))


def _suite(home) -> dict:
    return planted(next((home / "demo").iterdir()))


def _strip(path: str) -> str:
    return path.split("/", 1)[1]            # suite-relative -> dataset-relative


def _planted_pairs(truth: dict, kind: str) -> set[tuple[str, str]]:
    """(path in the earlier stage, path in the later split) of the planted copies of `kind`
    (source->destination: the destination dataset is the earlier stage when it is IMDB/AgeDB)."""
    src, dst = kind.split("->")
    pairs = {(_strip(d["a"]), _strip(d["b"])) for d in truth["duplicates"] if d["kind"] == kind}
    return {(b, a) for a, b in pairs} if src == "fgnet" else pairs


def test_every_audit_of_the_main_job_finds_exactly_the_planted_overlap(home):
    plan = _plan(home)
    truth = _suite(home)
    audit = leakage(plan)
    checks = {(c.stage, c.other): c for c in audit.checks()}
    assert set(checks) == {("imdb", "fgnet"), ("imdb", "agedb"), ("agedb", "fgnet")}
    # the target's images: FG-NET photos copied into IMDB and into AgeDB; FG-NET has no names
    for stage in ("imdb", "agedb"):
        found = {(r.path, r.other) for r in checks[(stage, "fgnet")].pairs.itertuples()}
        assert found == _planted_pairs(truth, f"fgnet->{stage}") and len(found) == 2
        assert checks[(stage, "fgnet")].identities is None
    # AgeDB's validation split: the planted IMDB copies and shared persons that landed in it
    agedb_node = next(n for n in plan.nodes if n.kind == "train" and n.stage == "agedb")
    val_paths = set(plan.cache("agedb").table.frame["path"].to_numpy()[audit.rows(agedb_node)[1]])
    check = checks[("imdb", "agedb")]
    assert {(r.path, r.other) for r in check.pairs.itertuples()} == \
        {(a, b) for a, b in _planted_pairs(truth, "imdb->agedb") if b in val_paths}
    from cascade.data.overlap import normalise_name
    agedb_names = plan.cache("agedb").table.frame["subject"]
    in_val = {normalise_name(s) for s in agedb_names.to_numpy()[audit.rows(agedb_node)[1]]}
    shared = {normalise_name(p["name"]) for p in truth["identities"] if set(p["datasets"]) == {"imdb", "agedb"}}
    assert shared and set(check.identities) == shared & in_val
    assert all(c.removed == {} for c in checks.values())          # exclude_overlap=none keeps them


def test_data_overlap_command_finds_exactly_the_planted_pairs(home, tmp_path, capsys):
    """`cascade data overlap` over whole datasets: planted copies across datasets, shared
    persons, and the planted same-photo pairs within IMDB, nothing else."""
    from cascade.cli import main

    truth = _suite(home)
    out = tmp_path / "found.csv"
    assert main(["data", "overlap", "imdb", "agedb", *FAST, *CROPS, f"home={home}", "--out", str(out)]) == 0
    found = pd.read_csv(out)
    dup = found[found["kind"] == "duplicate"]
    assert set(zip(dup["left"], dup["right"])) == _planted_pairs(truth, "imdb->agedb")
    within = found[found["kind"] == "within imdb"]
    assert {frozenset(p) for p in zip(within["left"], within["right"])} == \
        {frozenset((_strip(d["a"]), _strip(d["b"]))) for d in truth["duplicates"] if d["kind"] == "imdb->imdb"}
    from cascade.data.overlap import normalise_name
    assert set(found.loc[found["kind"] == "identity", "left"]) == \
        {normalise_name(p["name"]) for p in truth["identities"] if set(p["datasets"]) == {"imdb", "agedb"}}
    assert "colour" in found.columns and (dup["distance"] <= 8).all()
    for a, b in (("imdb", "wiki"), ("wiki", "agedb")):
        assert main(["data", "overlap", a, b, *FAST, *CROPS, f"home={home}", "--out", str(out)]) == 0
        found = pd.read_csv(out)
        dup = found[found["kind"] == "duplicate"]
        assert set(zip(dup["left"], dup["right"])) == _planted_pairs(truth, f"{a}->{b}")
        assert set(found.loc[found["kind"] == "identity", "left"]) == \
            {normalise_name(p["name"]) for p in truth["identities"] if set(p["datasets"]) == {a, b}}


def test_exclude_overlap_changes_the_keys_it_must_and_no_other(home):
    base = _plan(home)
    assert [n.key for n in base.nodes] == [n.key for n in _plan(home, "data.overlap.hamming=4").nodes]   # off: not keyed
    both = _plan(home, "data.exclude_overlap=both")
    keys = {n.label: n.key for n in base.nodes}
    changed = {n.label for n in both.nodes if keys[n.label] != n.key}
    assert changed == {n.label for n in base.nodes if n.chain}          # every node trained after an excluding stage
    assert [n.key for n in both.nodes] != [n.key for n in _plan(home, "data.exclude_overlap=identities").nodes]
    assert [n.key for n in both.nodes] != [n.key for n in _plan(home, "data.exclude_overlap=both",
                                                                "data.overlap.hamming=4").nodes]
    with pytest.raises(C.ConfigError, match="data.exclude_overlap='all' is not valid"):
        C.load(FAST + ["data.exclude_overlap=all"])
    # the exclusion part opens the target first; the plan (its header and figures) still lists
    # the datasets in its own order
    assert list(both.tables) == list(base.tables) == ["imdb", "agedb", "fgnet"]


def test_excluded_rows_leave_the_stage_and_are_counted(home):
    truth = _suite(home)
    plan = _plan(home, "data.exclude_overlap=both")
    audit = leakage(plan)
    imdb = next(n for n in plan.nodes if n.kind == "train" and n.stage == "imdb")
    train, val = audit.rows(imdb)
    frame = plan.cache("imdb").table.frame
    used = set(frame["path"].to_numpy()[np.concatenate([train, val])])
    gone = set(frame["path"]) - used
    copies = {a for a, _ in _planted_pairs(truth, "fgnet->imdb")}
    assert copies <= gone                                    # the target's photos never train IMDB
    checks = [c for c in audit.checks() if c.stage == "imdb"]
    assert len(gone) == sum(sum(c.removed.values()) for c in checks) > 0
    steps = dict(plan.cache("imdb").table.report.steps)
    assert steps["same photo as the fgnet test images (data.exclude_overlap)"] == len(copies)
    assert plan.cache("imdb").table.report.n_kept == len(frame) - len(gone)
    # the test set itself is never touched
    assert len(plan.cache("fgnet").table.frame) == plan.cache("fgnet").table.report.n_kept


@pytest.mark.slow
def test_a_run_says_what_it_found_in_its_header_and_files(home, tmp_path):
    from cascade.cli import main

    res = tmp_path / "res"
    short = ["backbones.demo.stages.imdb.epochs=1", "backbones.demo.stages.agedb.epochs=1",
             "backbones.demo.stages.head_only.epochs=1", "run.prefixes=false"]
    assert main(["run", *MAIN, *FAST, *CROPS, *short, f"home={home}", f"run.results_dir={res}",
                 "data.exclude_overlap=both", "--quiet"]) == 0
    folder = next(res.iterdir())
    header = json.loads((folder / "run.json").read_text())["header"]
    lines = [h for h in header if h.startswith("Overlap of stage")]
    assert len(lines) == 3 and all("data.exclude_overlap=both" in h for h in lines)
    assert any("imdb with the fgnet test images" in h and "removed from imdb" in h for h in lines)
    found = pd.read_csv(folder / "overlap.csv")
    assert set(found["kind"]) <= {"person", "photo"} and (found["kind"] == "photo").any()
    assert (folder / "figures" / "overlap_pairs.png").exists()
    assert "same photo as the fgnet test images" in (folder / "table.md").read_text()
    # `cascade report` rebuilds the same header from the store: the removals counted as before
    before = (folder / "table.md").read_text()
    assert main(["report", str(folder)]) == 0
    assert (folder / "table.md").read_text().split("- Environment")[0] == before.split("- Environment")[0]


def test_same_face_test_finds_the_copies_and_is_keyed(home, tmp_path):
    """data.overlap.faces: embeddings of a face-recognition body (here the demo body's imported
    weights: no real face-recognition weights exist on this machine, so this checks the
    machinery, not identity); a copied photo has the same face as its original."""
    from conftest import import_demo_weights

    weights = import_demo_weights(tmp_path, home)
    truth = _suite(home)
    faces = [f"backbones.demo.weights={weights}", "data.overlap.faces=demo", "data.overlap.cosine=0.999"]
    plan = _plan(home, *faces)
    check = next(c for c in leakage(plan).checks() if (c.stage, c.other) == ("imdb", "fgnet"))
    assert _planted_pairs(truth, "fgnet->imdb") <= {(r.path, r.other) for r in check.faces.itertuples()}
    assert (check.faces["cosine"] >= 0.999).all()
    assert "same faces (demo, cosine ≥ 0.999)" in check.line("none")
    assert "face" in set(leakage(plan).findings()["kind"])
    from cascade.cli import main
    out = tmp_path / "faces.csv"
    assert main(["data", "overlap", "imdb", "fgnet", *FAST, *CROPS, *faces, f"home={home}", "--out", str(out)]) == 0
    found = pd.read_csv(out)
    assert _planted_pairs(truth, "fgnet->imdb") <= set(zip(*found[found["kind"] == "face"][["left", "right"]].to_numpy().T))
    keyed = _plan(home, *faces, "data.exclude_overlap=identities")
    other = _plan(home, *faces[:2], "data.overlap.cosine=0.9", "data.exclude_overlap=identities")
    assert [n.key for n in keyed.nodes if n.chain] != [n.key for n in other.nodes if n.chain]


def test_same_face_without_weights_is_a_problem_named_before_any_work(home):
    found = P.problems(C.load(FAST + MAIN + [f"home={home}", "data.overlap.faces=inception_resnet_v1"]))
    assert any(p.startswith("data.overlap.faces:") and "inception_resnet_v1" in p for p in found)
