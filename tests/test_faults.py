"""Faults a days-long run on a shared cluster meets: damaged artifacts (detected by
their sha256, only the damaged part recomputed), stale locks of dead processes, two runs of one
stage at once, a full disk during a write, untrusted input (code-running weight pickles, paths
escaping the dataset root, absurd labels, wrong-typed settings) and leaky splits.

The kill -9 tests live in test_pipeline.py (one kill mid-stage, one during `--jobs 2`) and in
test_crash_anywhere.py (SIGKILL at random points of every kind of work)."""
import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cascade import config as C
from cascade.cli import main
from cascade.data.formats import load
from cascade.data.formats._common import ESCAPES_ROOT, escapes_root
from cascade.protocols import SPLITTERS, folds, load_protocol, protocol_names
from cascade.stages import execute
from cascade.stages import plan as P
from cascade.store import MARKER, StageDir

from conftest import FAST

ROOT = Path(__file__).resolve().parents[1]
#: One intermediate stage and a target, in one process: LOPO (many small folds) for the tests
#: that damage a finished store, one subject-exclusive holdout fold for those that train from
#: scratch.  The imdb stage has the same key (and weights) in both.
EXTRA = ["stage=imdb", "target=fgnet", "data.max_images=24", "jobs=1", "run.prefixes=false"]
LOPO = [*EXTRA, "stages.fgnet.protocol=lopo"]
ONE = [*EXTRA, "stages.fgnet.protocol=holdout"]


def _args(home, *extra, proto=LOPO):
    return ["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "--quiet", *proto, *extra]


def _cli(home, *extra, proto=ONE):
    return [sys.executable, "-m", "cascade.cli", *_args(home, *extra, proto=proto)]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _nodes(home, proto=LOPO):
    plan = P.build(C.load(FAST + [f"home={home}", *proto]))
    train = next(n for n in plan.nodes if n.kind == "train")
    return plan, home / "stages" / train.key, home / "stages" / plan.targets[0].key


def _fresh(suite_home, path):
    path.mkdir()
    (path / "demo").symlink_to(suite_home / "demo")
    return path


@pytest.fixture(scope="module")
def done(suite_home, tmp_path_factory):
    """One uninterrupted run: the reference every repaired store must equal."""
    home = _fresh(suite_home, tmp_path_factory.mktemp("done") / "home")
    assert main(_args(home)) == 0
    return home


def _clone(done, tmp_path):
    home = tmp_path / "clone"
    shutil.copytree(done, home, symlinks=True)
    return home


@pytest.fixture()
def calls(monkeypatch):
    """What a run trains: the intermediate stages it fits and the target folds it runs."""
    seen = {"stages": 0, "folds": []}
    real_save, real_fold = execute._save_model, execute.run_fold

    def save(*a, **k):                      # called once per trained intermediate stage
        seen["stages"] += 1
        return real_save(*a, **k)

    def fold(job, *args):
        seen["folds"].append(job.name)
        return real_fold(job, *args)

    monkeypatch.setattr(execute, "_save_model", save)
    monkeypatch.setattr(execute, "run_fold", fold)
    return seen


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


def _stamps(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- damaged artifacts

def test_deleted_and_damaged_fold_files_recompute_only_those_folds(done, tmp_path, calls, capsys):
    """A complete target lists its fold files in its marker: a deleted one, or one with a flipped
    byte (same size: only the sha256 sees it), is recomputed alone; predictions.csv ends equal."""
    home = _clone(done, tmp_path)
    _, stage, target = _nodes(home)
    files = sorted((target / "folds").glob("*.csv"))
    assert len(files) > 10
    json_marker = json.loads((target / MARKER).read_text())
    assert f"folds/{files[0].name}" in json_marker["files"]
    preds = (target / "predictions.csv").read_bytes()
    files[3].unlink()
    _flip(files[7])
    before = _stamps(target / "folds")
    assert main(_args(home)) == 0
    assert "damaged" in capsys.readouterr().err
    assert sorted(calls["folds"]) == sorted([files[3].stem, files[7].stem]) and calls["stages"] == 0
    untouched = {p: t for p, t in before.items() if p.name.split(".")[0] not in (files[3].stem, files[7].stem)}
    assert untouched and all(p.stat().st_mtime_ns == t for p, t in untouched.items())
    assert (target / "predictions.csv").read_bytes() == preds
    assert StageDir(target.parent, target.name).verify() == []


def test_damaged_predictions_and_truncated_weights_are_recomputed_alone(done, tmp_path, calls, capsys):
    """predictions.csv with a flipped byte is rebuilt from the intact folds (nothing trains); a
    truncated weights.safetensors retrains that stage alone, to the same bytes; the target built
    on it stays complete (its key does not change)."""
    home = _clone(done, tmp_path)
    _, stage, target = _nodes(home)
    preds, weights = (target / "predictions.csv").read_bytes(), (stage / "weights.safetensors").read_bytes()
    _flip(target / "predictions.csv", 0.9)
    (stage / "weights.safetensors").write_bytes(weights[: len(weights) // 2])
    target_files = _stamps(target / "folds")
    assert main(_args(home)) == 0
    err = capsys.readouterr().err
    assert "predictions.csv" in err and "weights.safetensors" in err
    assert calls["stages"] == 1 and calls["folds"] == []
    assert (stage / "weights.safetensors").read_bytes() == weights
    assert (target / "predictions.csv").read_bytes() == preds
    assert all(p.stat().st_mtime_ns == t for p, t in target_files.items())


def test_flipped_byte_in_the_image_cache_rebuilds_it_before_a_fold_reads_it(done, tmp_path, calls, capsys):
    """The image cache is checked by sha256 whenever a stage needs it: a flipped pixel byte is
    rebuilt (not used) before the one missing fold trains, which then equals the reference."""
    home = _clone(done, tmp_path)
    _, _, target = _nodes(home)
    fgnet = next(p.parent for p in (home / "cache").glob(f"*/{MARKER}")
                 if json.loads(p.read_text()).get("dataset") == "fgnet")
    _flip(fgnet / "images.npy", 0.7)
    victim = sorted((target / "folds").glob("*.csv"))[5]
    victim.unlink()
    assert main(_args(home)) == 0
    assert "image cache" in capsys.readouterr().err
    assert calls["folds"] == [victim.stem]
    assert StageDir(fgnet.parent, fgnet.name).verify() == []
    assert (target / "predictions.csv").read_bytes() == (_nodes(done)[2] / "predictions.csv").read_bytes()


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    return pickle.dumps({"model": Evil(), "optimizer": {}, "scheduler": {}, "state": {}})


@pytest.mark.parametrize("damage", ["truncated", "code-running pickle"])
def test_unreadable_checkpoint_trains_the_stage_from_its_first_epoch(suite_home, done, tmp_path, monkeypatch,
                                                                     capsys, damage):
    """A stage stopped after its last epoch checkpoint; the checkpoint is then truncated, or replaced
    by a pickle that would run code: the rerun refuses it (no code runs), says so in the stage's
    log, trains from epoch 1 and reaches the reference weights."""
    home = _fresh(suite_home, tmp_path / "home")
    _, stage, _ = _nodes(home, ONE)

    def stop(*_a, **_k):
        raise KeyboardInterrupt("stopped before saving the weights")
    monkeypatch.setattr(execute, "_save_model", stop)
    with pytest.raises(KeyboardInterrupt):
        main(_args(home, proto=ONE))
    monkeypatch.undo()
    ckpt = stage / "ckpt.pt"
    marker = tmp_path / "pwned"
    assert ckpt.exists() and not (stage / MARKER).exists()
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3] if damage == "truncated" else _evil_pickle(marker))
    assert main(_args(home, proto=ONE)) == 0
    assert not marker.exists()
    log = (stage / "log.txt").read_text()
    assert "checkpoint ckpt.pt unreadable" in log and "training from the first epoch" in log
    assert (stage / "weights.safetensors").read_bytes() == (_nodes(done)[1] / "weights.safetensors").read_bytes()


HOLD_LOCK = """
import sys, time
from pathlib import Path
from cascade.store import StageDir
with StageDir(Path(sys.argv[1]), sys.argv[2]).lock():
    print("locked", flush=True)
    time.sleep(600)
"""


def test_stale_lock_of_a_killed_process_blocks_nothing(suite_home, done, tmp_path):
    """A process holding a stage's lock is killed (SIGKILL): its `.lock` file stays behind, but
    the kernel released the flock, so the waiting run proceeds and the next run completes."""
    home = _fresh(suite_home, tmp_path / "home")
    _, stage, _ = _nodes(home, ONE)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(stage.parent), stage.name],
                              stdout=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        got = threading.Event()

        def take():
            with StageDir(stage.parent, stage.name).lock():
                got.set()
        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(1.0)                                   # alive holder: the run waits
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert got.wait(10) and (stage / ".lock").exists()              # stale file, no stale lock
    assert main(_args(home, proto=ONE)) == 0
    assert (stage / "weights.safetensors").read_bytes() == (_nodes(done)[1] / "weights.safetensors").read_bytes()


@pytest.mark.slow
def test_two_runs_of_the_same_stages_at_once(suite_home, done, tmp_path):
    """Two processes run the same cascade in one store at the same time: each stage is computed
    once (the other waits on its lock, then reuses it), both succeed, nothing is corrupted."""
    home = _fresh(suite_home, tmp_path / "home")
    _, stage, target = _nodes(home, ONE)
    procs = [subprocess.Popen(_cli(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=_env()) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    assert (stage / "log.txt").read_text().count("start pretrained → imdb") == 1
    for folder in (stage, target, *(p.parent for p in (home / "cache").glob(f"*/{MARKER}"))):
        assert StageDir(folder.parent, folder.name).verify() == []
    assert (stage / "weights.safetensors").read_bytes() == (_nodes(done)[1] / "weights.safetensors").read_bytes()
    assert (target / "folds" / "0.csv").exists() and (target / MARKER).exists()
    assert not list(home.rglob("*.tmp"))


# ----------------------------------------------------------------------------- disk full

@pytest.fixture()
def disk_full(monkeypatch):
    """Patch the store's writer: writing a temp file whose name contains one of `names` writes
    half of the data, then fails with ENOSPC (as a full disk does)."""
    names: list[str] = []
    real = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def fdopen(fd, *a, **k):
        fh = real(fd, *a, **k)
        path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        return Full(fh) if any(f".{n}." in os.path.basename(path) for n in names) else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    return names


def test_disk_full_while_saving_weights_is_a_clear_error_and_the_rerun_resumes(suite_home, done, tmp_path,
                                                                              disk_full, capsys):
    home = _fresh(suite_home, tmp_path / "home")
    _, stage, _ = _nodes(home, ONE)
    disk_full.append("weights.safetensors")
    assert main(_args(home, proto=ONE)) == 1
    err = capsys.readouterr().err
    assert "No space left on device while writing" in err and "weights.safetensors" in err
    assert "intact" in err and "Traceback" not in err
    assert not list(home.rglob("*.tmp")) and not (stage / "weights.safetensors").exists()
    assert not (stage / MARKER).exists()
    assert torch.load(stage / "ckpt.pt", weights_only=True)["state"]["epoch"] >= 1   # last epoch kept
    disk_full.clear()
    assert main(_args(home, proto=ONE)) == 0
    assert "resumed from ckpt.pt" in (stage / "log.txt").read_text()
    assert (stage / "weights.safetensors").read_bytes() == (_nodes(done)[1] / "weights.safetensors").read_bytes()


def test_disk_full_while_writing_a_report_keeps_the_previous_tables(done, tmp_path, disk_full, capsys):
    home = _clone(done, tmp_path)
    run = next((home / "results").iterdir())
    # the clone's run.json names the original home: rebuild it for this one
    meta = json.loads((run / "run.json").read_text())
    meta["settings"] = [s.replace(str(done), str(home)) for s in meta["settings"]]
    (run / "run.json").write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    disk_full.append("table.csv")
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device while writing" in err and "table.csv" in err
    assert (run / "table.csv").read_bytes() == before[run / "table.csv"]
    assert not list(home.rglob("*.tmp"))
    disk_full.clear()
    assert main(["report", str(run)]) == 0
    assert (run / "table.csv").read_bytes() == before[run / "table.csv"]


def test_disk_full_when_the_image_cache_is_allocated_is_a_clear_error(home, monkeypatch, capsys):
    """The cache's pixel array is a memory map: its blocks are reserved first, so a full disk is
    an error naming the file (not SIGBUS on the first page written), and nothing half-built stays."""
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full)
    assert main(["data", "prepare", "fgnet", *FAST, f"home={home}"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device while writing" in err and "images.npy.partial" in err
    assert not list((home / "cache").rglob("images.npy*")) and not list((home / "cache").rglob(MARKER))
    monkeypatch.undo()
    assert main(["data", "prepare", "fgnet", *FAST, f"home={home}"]) == 0
    assert len(list((home / "cache").rglob(MARKER))) == 1


# ----------------------------------------------------------------------------- untrusted input

@pytest.mark.parametrize("fmt, backbone, suffix", [
    ("dag-pth", "resnet50", ".pth"), ("torchvision", "vgg16", ".pth"), ("timm", "timm:resnet18", ".pth"),
    ("mobilefacenet-ckpt", "mobilefacenet", ".ckpt"), ("facenet-pt", "inception_resnet_v1", ".pt"),
    ("safetensors", "demo", ".safetensors")])
def test_every_weight_format_refuses_a_code_running_pickle(tmp_path, fmt, backbone, suffix):
    """Each format that reads torch files loads them with weights_only=True (vggface2-pkl's own
    reader is tested in test_import.py): a file whose unpickling would run code is refused,
    the code does not run, and nothing is written to the weights folder."""
    from cascade.models.importers import import_weights

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)
    path = tmp_path / f"evil{suffix}"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(Exception) as err:
        import_weights(path, fmt, "evil", backbone, tmp_path / "home")
    assert not marker.exists(), f"{fmt} ran code from {path.name}"
    assert not isinstance(err.value, (AttributeError, NameError)), err.value
    weights = tmp_path / "home" / "weights"
    assert not weights.exists() or not any(weights.iterdir())


def test_weights_setting_pointing_at_a_pickle_is_refused(home, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(_evil_pickle(marker))
    assert main(_args(home, f"weights={evil}", proto=ONE)) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and "Traceback" not in err and not marker.exists()


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../outside.jpg", "..\\..\\x.jpg",
                                  "C:\\Windows\\x.jpg", ""])
def test_escaping_paths_are_recognised(path):
    assert escapes_root(path)


@pytest.mark.parametrize("path", ["01/nm1_rm2.jpg", "faces/u/x..y.jpg", "a/.../b.jpg", "..jpg"])
def test_ordinary_paths_are_not_escaping(path):
    assert not escapes_root(path)


def _adience_row(user, image, face_id="1", age="(25, 32)", fold="0"):
    return [user, image, face_id, age, "m", "0", "0", "10", "10", "0", "0", "1", fold]


@pytest.mark.parametrize("require_files", [True, False])
def test_adience_rows_escaping_the_root_are_quarantined(tmp_path, require_files):
    """A fold-file row whose user folder or image name climbs out of the dataset root is
    quarantined with the reason (never opened), even when the file it names exists."""
    root = tmp_path / "adience"
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    rows = [_adience_row("u1", "ok.jpg"), _adience_row("../../..", "outside.jpg"),
            _adience_row("u2", "x/../../../../../../etc/passwd", fold="1")]
    from cascade.data.formats.adience import FIELDS
    root.mkdir()
    for k in range(5):
        body = ["\t".join(FIELDS)] + ["\t".join(r[:-1]) for r in rows if r[-1] == str(k)]
        (root / f"fold_{k}_data.txt").write_text("\n".join(body) + "\n")
    good = root / "faces" / "u1" / "coarse_tilt_aligned_face.1.ok.jpg"
    good.parent.mkdir(parents=True)
    good.write_bytes(b"")
    table = load("adience", root, require_files=require_files)
    assert list(table.frame["path"]) == ["faces/u1/coarse_tilt_aligned_face.1.ok.jpg"]
    assert dict(table.report.steps)[ESCAPES_ROOT] == 2
    bad = [q for q in table.report.quarantine if q["reason"] == ESCAPES_ROOT]
    assert len(bad) == 2


def test_imdb_and_agedb_listings_escaping_the_root_are_quarantined(tmp_path):
    import scipy.io
    from test_formats import imdb_row, write_imdb_mat

    root = tmp_path / "imdb"
    root.mkdir()
    (tmp_path / "nm0000002_rm1.jpg").write_bytes(b"")               # exists, but outside the root
    rows = [imdb_row("01/nm0000001_rm1.jpg"), imdb_row("../nm0000002_rm1.jpg"), imdb_row("/etc/passwd")]
    write_imdb_mat(root / "imdb.mat", rows)
    (root / "01").mkdir()
    (root / "01" / "nm0000001_rm1.jpg").write_bytes(b"")
    table = load("imdb", root)
    assert list(table.frame["path"]) == ["01/nm0000001_rm1.jpg"]
    assert {q["path"] for q in table.report.quarantine if q["reason"] == ESCAPES_ROOT} == \
        {"../nm0000002_rm1.jpg", "/etc/passwd"}

    agedb = tmp_path / "agedb"
    agedb.mkdir()
    names = ["1_Ann_30_f.jpg", "../2_Bob_40_m.jpg", "/tmp/3_Cy_50_m.jpg"]
    cells = np.empty((1, 3), dtype=object)
    mat = {}
    for field, values in {"fileno": ["1", "2", "3"], "filename": names, "name": ["Ann", "Bob", "Cy"],
                          "age": ["30", "40", "50"], "gender": ["f", "m", "m"]}.items():
        cells = np.empty((1, 3), dtype=object)
        for i, v in enumerate(values):
            cells[0, i] = v
        mat[field] = cells
    scipy.io.savemat(agedb / "AgeDB_metadata.mat", mat)
    (agedb / "1_Ann_30_f.jpg").write_bytes(b"")
    table = load("agedb", agedb, listing="mat", require_files=False)
    assert list(table.frame["path"]) == ["1_Ann_30_f.jpg"]
    assert dict(table.report.steps)[ESCAPES_ROOT] == 2


def test_absurd_ages_are_quarantined_with_the_rule(tmp_path):
    """-5, 250 and NaN never become a class: each loader quarantines them under a named rule."""
    agedb = tmp_path / "agedb"
    agedb.mkdir()
    for n in ("1_Ann_30_f.jpg", "2_Bob_250_m.jpg", "3_Cy_0_m.jpg"):
        (agedb / n).write_bytes(b"")
    table = load("agedb", agedb)
    assert sorted(table.frame["age"]) == [0.0, 30.0]
    assert {q["path"]: q["reason"] for q in table.report.quarantine} == {
        "2_Bob_250_m.jpg": "age outside 0-120 or not a number"}

    (agedb / "AgeDB.json").write_text(json.dumps([
        {"img_path": "AgeDB/1_Ann_30_f.jpg", "name": "Ann", "age": 30, "gender": "f", "folder": 0},
        {"img_path": "AgeDB/2_Bob_250_m.jpg", "name": "Bob", "age": -5, "gender": "m", "folder": 1},
        {"img_path": "AgeDB/3_Cy_0_m.jpg", "name": "Cy", "age": "NaN", "gender": "m", "folder": 2}]))
    table = load("agedb", agedb)
    assert list(table.frame["age"]) == [30.0]
    assert {q["reason"] for q in table.report.quarantine} == {"unparseable label", "age outside 0-120 or not a number"}

    fgnet = tmp_path / "fgnet"
    (fgnet / "images").mkdir(parents=True)
    for n in ("001A02.JPG", "002A05.JPG"):
        (fgnet / "images" / n).write_bytes(b"")
    (fgnet / "FG-Net.json").write_text(json.dumps([{"img_path": "001A02.jpg", "id_num": 1, "age": 2},
                                                  {"img_path": "002A05.jpg", "id_num": 2, "age": 250}]))
    table = load("fgnet", fgnet)
    assert list(table.frame["age"]) == [2.0]
    assert table.report.quarantine == [{"path": "images/002A05.JPG", "reason": "age outside 0-120 or not a number"}]

    imdb = tmp_path / "imdb"
    imdb.mkdir()
    (imdb / "imdb.csv").write_text("genders,ages,img_paths\n1,30,a.jpg\n1,-5,b.jpg\n0,250,c.jpg\n0,NaN,d.jpg\n")
    table = load("imdb", imdb, require_files=False)
    assert list(table.frame["path"]) == ["a.jpg"] and dict(table.report.steps)["age outside 0-100"] == 3


def test_an_impossible_label_reaching_a_table_is_a_clear_error(tmp_path):
    """The last line of defence (a loader bug would trip it): make_table refuses negative ages."""
    from cascade.data.formats._common import build_frame, make_table
    from cascade.data.records import CleaningReport

    frame = build_frame(2, path=["a.jpg", "b.jpg"], age=[30.0, -5.0], age_lo=[30, -5], age_hi=[30, -5],
                        subject=["1", "2"])
    with pytest.raises(ValueError, match=r"impossible age label .* b.jpg: -5--5"):
        make_table("x", tmp_path, frame, CleaningReport("x", "test", n_raw=2))
    frame = build_frame(1, path=["../a.jpg"], age=[3.0], age_lo=[3], age_hi=[3], subject=["1"])
    with pytest.raises(ValueError, match="escape the dataset root"):
        make_table("x", tmp_path, frame, CleaningReport("x", "test", n_raw=1))


@pytest.mark.parametrize("word, needle", [
    ("seed=abc", "seed='abc': expected int"), ("jobs=two", "jobs='two': expected int"),
    ("train.lr=0.1.2", "expected float"), ("data.margin=wide", "expected float"),
    ("train.feature_cache=2", "expected bool"), ("data.synth.scale=", "expected float"),
    ("stages.imdb.epochs=-3", "must be >= 0")])
def test_wrong_typed_settings_are_clear_errors_on_the_command_line(word, needle, capsys):
    assert main(["run", *FAST, word, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("body, needle", [
    ("splitter: holdout\ntest_fraction: lots\n", "test_fraction: 'lots' is a str; expected int or float"),
    ("splitter: holdout\ntest_fraction: 1.5\n", "must be between 0 and 1"),
    ("splitter: fixed_test_subjects\ntest_subjects: 7\n", "test_subjects: 7 is a int; expected list"),
    ("splitter: holdout\nsubject_exclusive: 'no'\n", "subject_exclusive: 'no' is a str; expected bool"),
    ("- just\n- a list\n", "expected a mapping")])
def test_wrong_typed_protocol_files_are_clear_errors(tmp_path, monkeypatch, body, needle):
    (tmp_path / "mine.yaml").write_text(body)
    monkeypatch.setenv("CASCADE_PROTOCOLS", str(tmp_path))
    with pytest.raises(ValueError, match=None) as err:
        load_protocol("mine")
    assert needle in str(err.value) and "mine.yaml" in str(err.value)


# ----------------------------------------------------------------------------- leakage guard

@pytest.mark.parametrize("name", protocol_names())
def test_every_protocol_checks_its_folds_for_shared_subjects(name, monkeypatch):
    """Whatever a splitter returns, a fold with one subject on both sides stops the run: every
    shipped protocol is subject-exclusive (holdout included: it splits by subject)."""
    spec = load_protocol(name)
    assert spec.get("subject_exclusive", True) is True
    frame = pd.DataFrame({"subject": ["a", "a", "b", "c"], "fold": [0, 1, 1, 0]})

    def leaky(frame, spec, seed):
        yield "0", np.array([0, 2]), np.array([1, 3])                 # 'a' in train and test
    monkeypatch.setitem(SPLITTERS, spec["splitter"], leaky)
    with pytest.raises(ValueError, match=r"fold 0 has subjects in both train and test: \['a'\]"):
        folds(frame, spec, seed=0)


def test_a_protocol_file_without_the_flag_is_checked_too(tmp_path, monkeypatch):
    """An image-level holdout that forgets `subject_exclusive: false` is refused, not run leaky."""
    (tmp_path / "images.yaml").write_text("name: images\nsplitter: holdout\nby_subject: false\n")
    monkeypatch.setenv("CASCADE_PROTOCOLS", str(tmp_path))
    frame = pd.DataFrame({"subject": [str(i // 5) for i in range(100)], "fold": -1})
    with pytest.raises(ValueError, match="subjects in both train and test"):
        folds(frame, load_protocol("images"), seed=0)


def test_a_leaky_split_file_stops_the_run_before_anything_trains(suite_home, tmp_path, capsys):
    """Adience fold files that put one person in two folds: `cascade run target=adience` exits 2
    naming the subject and trains nothing."""
    src = next((suite_home / "demo").iterdir()) / "adience"
    root = tmp_path / "adience"
    shutil.copytree(src, root, symlinks=True)
    fold0 = (root / "fold_0_data.txt").read_text().splitlines()
    fold1 = (root / "fold_1_data.txt").read_text().splitlines()
    moved = fold0[1].split("\t")
    fold1.append("\t".join([moved[0], "moved.jpg", *moved[2:]]))    # fold 0's person, now in fold 1
    (root / "fold_1_data.txt").write_text("\n".join(fold1) + "\n")
    home = _fresh(suite_home, tmp_path / "home")
    rc = main(["run", *FAST, f"home={home}", f"data.root.adience={root}", "stage=", "target=adience", "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not subject-exclusive" in err and moved[0] in err
    assert not (home / "stages").exists() or not list((home / "stages").rglob("*.safetensors")) \
        and not list((home / "stages").rglob("folds/*"))
