"""Artifact store: stable keys, atomic writes, and completion that cannot be faked by a crash."""
import json
import os

import pytest

from cascade.store import (MARKER, StageDir, atomic_write_bytes, atomic_write_json, stable_hash)


def test_same_config_same_key_any_change_new_key():
    a = {"stage": "imdb", "params": {"lr": 0.01, "epochs": 60}, "parent": "abc"}
    b = {"parent": "abc", "params": {"epochs": 60, "lr": 0.01}, "stage": "imdb"}   # key order irrelevant
    assert stable_hash(a) == stable_hash(b)
    for change in ({"lr": 0.02}, {"epochs": 61}):
        c = json.loads(json.dumps(a))
        c["params"].update(change)
        assert stable_hash(c) != stable_hash(a)
    assert stable_hash({**a, "parent": "abd"}) != stable_hash(a)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})

    def boom(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]     # no temp file left behind


def test_stage_is_complete_only_with_a_valid_marker(tmp_path):
    d = StageDir(tmp_path, "k1")
    d.path.mkdir()
    (d.path / "weights.bin").write_bytes(b"abc")
    assert not d.is_complete()                        # files but no marker: unfinished
    d.mark_complete(["weights.bin"])
    assert d.is_complete() and d.verify() == []
    (d.path / "weights.bin").write_bytes(b"abcd")     # truncated / replaced after completion
    assert not d.is_complete()
    (d.path / "weights.bin").write_bytes(b"abd")      # same size, different bytes
    assert d.is_complete() and d.verify() == ["weights.bin"]
    (d.path / MARKER).write_text("{not json")          # a torn marker is not complete
    assert not d.is_complete()


def test_fill_writes_once_resumes_after_a_crash_and_removes_scratch_last(tmp_path):
    """The one routine of every keyed folder: a writer killed mid-way leaves no marker and its
    resume state (here a checkpoint) for the rerun, which first sweeps the dead writer's
    temporaries; the scratch file goes only after the marker; a complete folder is not rewritten."""
    d = StageDir(tmp_path, "k")
    calls = []

    def crash():
        calls.append("crash")
        d.file("ckpt.pt").write_text("epoch 3")
        d.file(".out.bin.ab12.tmp").write_text("half")
        raise KeyboardInterrupt

    def write():
        calls.append(d.file("ckpt.pt").read_text())
        assert not d.file(".out.bin.ab12.tmp").exists()
        d.file("out.bin").write_text("done")
        return ["out.bin"]

    with pytest.raises(KeyboardInterrupt):
        d.fill("stage", crash, scratch=("ckpt.pt",))
    assert not d.is_complete() and d.file("ckpt.pt").exists()
    assert d.fill("stage", write, scratch=("ckpt.pt",), info={"size": 1})
    assert d.is_complete() and not d.file("ckpt.pt").exists()
    assert json.loads(d.file(MARKER).read_text())["size"] == 1
    assert not d.fill("stage", write) and calls == ["crash", "epoch 3"]


def test_sweep_removes_killed_writers_temporaries_in_every_subfolder(tmp_path):
    """A fold worker killed while writing its validation predictions leaves its temp file two
    levels down (folds/validation/); the rerun's sweep must find it there too (the crash test
    caught one left behind when only the folder and folds/ were swept)."""
    d = StageDir(tmp_path, "k")
    for rel in ("x.json", "folds/001.csv", "folds/validation/026.csv", "figures/a.png"):
        (d.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (d.path / rel).write_text("kept")
    stale = [".x.json.ab12.tmp", "folds/.001.csv.cd34.tmp", "folds/validation/.026.csv.nii5gpvi.tmp",
             "figures/.a.ef56.tmp.png"]
    for rel in stale:
        (d.path / rel).write_text("half")
    assert d.sweep() == len(stale)
    left = sorted(str(p.relative_to(d.path)) for p in d.path.rglob("*") if p.is_file())
    assert left == ["figures/a.png", "folds/001.csv", "folds/validation/026.csv", "x.json"]


def test_a_background_checkpoint_holds_the_state_of_the_moment_it_was_saved(tmp_path):
    """A GPU run writes its checkpoint while the next epoch trains: what lands on disk is the
    state at `save` (training goes on changing the live tensors), writes land in order, and a
    failed write is raised by the next `wait`."""
    import torch

    from cascade.store import BackgroundSaver, safe_torch_load

    saver = BackgroundSaver()
    live = {"w": torch.zeros(1000), "history": [1]}
    saver.save(live, tmp_path / "ckpt.pt")
    live["w"] += 1                        # the next epoch trains on
    live["history"].append(2)
    saver.save(live, tmp_path / "ckpt2.pt")
    saver.wait()
    first, second = safe_torch_load(tmp_path / "ckpt.pt"), safe_torch_load(tmp_path / "ckpt2.pt")
    assert first["w"].sum() == 0 and first["history"] == [1]
    assert second["w"].sum() == 1000 and second["history"] == [1, 2]
    (tmp_path / "a-file").write_text("")
    saver.save(live, tmp_path / "a-file" / "ckpt.pt")          # its folder cannot exist
    with pytest.raises(OSError):
        saver.wait()
    saver.wait()                          # the error is raised once
