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
