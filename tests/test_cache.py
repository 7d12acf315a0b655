"""Decoded-image cache: built once with a manifest table, bad files quarantined and counted,
damage detected by hash and repaired by rebuilding."""
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cascade import config as C
from cascade.data.cache import prepare
from cascade.data.datasets import open_dataset
from cascade.store import file_sha256

from conftest import FAST, REFERENCE

CENTRE = {"mode": "none", "margin": None}


def _fgnet_copy(suite_home, tmp_path):
    """A private copy of the synthetic FG-NET folder, so files can be damaged."""
    src = next((suite_home / "demo").iterdir()) / "fgnet"
    dst = tmp_path / "fgnet"
    shutil.copytree(src, dst)
    cfg = C.load(FAST + [f"home={tmp_path}", f"data.root.fgnet={dst}"])
    return cfg, dst


def test_cache_manifest_and_quarantine(suite_home, tmp_path, capsys):
    cfg, root = _fgnet_copy(suite_home, tmp_path)
    files = sorted((root / "images").iterdir())
    files[0].write_bytes(b"")                                       # zero-byte
    files[1].write_bytes(files[1].read_bytes()[:40])                # truncated to its header
    files[2].write_text("not an image")                             # text named .JPG
    table = open_dataset(cfg, "fgnet", tmp_path)
    n = len(table)
    cache = prepare(table, 16, CENTRE, tmp_path, progress=False)
    assert len(cache) == len(cache.table) == n - 3
    assert cache.images.shape == (n - 3, 16, 16, 3) and cache.images.dtype == np.uint8
    steps = dict(table.report.steps)
    assert steps["image quarantined: undecodable"] == 2 and steps["image quarantined: zero-byte file"] == 1
    reasons = {q["path"]: q["reason"] for q in table.report.quarantine}
    assert reasons[f"images/{files[0].name}"] == "zero-byte file"
    assert reasons[f"images/{files[1].name}"].startswith("undecodable")
    assert reasons[f"images/{files[2].name}"].startswith("undecodable")

    manifest = pd.read_csv(cache.path / "manifest.csv", dtype={"subject": str}, keep_default_na=False)
    assert list(manifest.columns) == ["path", "sha256", "bytes", "age_lo", "age_hi", "subject", "fold",
                                      "cached_row", "quarantine"]
    good = manifest[manifest["cached_row"] >= 0]
    assert len(good) == n - 3 and list(good["cached_row"]) == list(range(n - 3))
    row = good.iloc[5]
    assert row["sha256"] == file_sha256(root / row["path"])
    assert row["bytes"] == (root / row["path"]).stat().st_size


def test_damaged_cache_is_detected_and_rebuilt(suite_home, tmp_path, capsys):
    cfg, _ = _fgnet_copy(suite_home, tmp_path)
    first = prepare(open_dataset(cfg, "fgnet", tmp_path), 16, CENTRE, tmp_path, progress=False)
    clean = np.array(first.images)
    path = first.path / "images.npy"
    del first
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF                                              # one flipped byte
    path.write_bytes(bytes(data))

    again = prepare(open_dataset(cfg, "fgnet", tmp_path), 16, CENTRE, tmp_path, progress=False)
    assert "damaged" in capsys.readouterr().err
    assert np.array_equal(np.array(again.images), clean)

    stamp = path.stat().st_mtime_ns                                 # intact: reused, not rebuilt
    prepare(open_dataset(cfg, "fgnet", tmp_path), 16, CENTRE, tmp_path, progress=False)
    assert path.stat().st_mtime_ns == stamp


def test_crop_modes_resolve_per_dataset(suite_home):
    from cascade.data.datasets import crop_settings

    cfg = C.load(FAST + [f"home={suite_home}"])
    synthetic = open_dataset(cfg, "fgnet", suite_home)
    assert crop_settings(cfg, synthetic) == {"mode": "none", "margin": None}      # rendered centred
    imdb = open_dataset(cfg, "imdb", suite_home)
    assert crop_settings(cfg, imdb)["mode"] == "box"                               # face_location
    synthetic.synthetic = False                                                    # as if real
    assert crop_settings(cfg, synthetic) == {"mode": "mtcnn", "margin": 0.4, "no_face": "quarantine",
                                             "min_prob": 0.9, "select": "central"}
    forced = C.load(FAST + [f"home={suite_home}", "data.crop=mtcnn", "data.no_face=centre"])
    assert crop_settings(forced, imdb)["no_face"] == "centre"


def test_mtcnn_crop_quarantines_or_centres_faceless_images(tmp_path):
    """Real AgeDB faces are found and cropped; a blank image is quarantined with its reason under
    no_face=quarantine and kept as a centred crop under no_face=centre."""
    pytest.importorskip("facenet_pytorch")
    faces = REFERENCE / "faces" / "agedb"
    if not faces.is_dir():
        pytest.skip("../shared/reference/faces/agedb absent")
    root = tmp_path / "agedb"
    root.mkdir()
    for f in sorted(faces.glob("*.jpg"))[:6]:
        shutil.copy(f, root / f.name)
    Image.new("RGB", (120, 120), (128, 128, 128)).save(root / "9999_Nobody_40_m.jpg")
    cfg = C.load(FAST + [f"home={tmp_path}", f"data.root.agedb={root}"])

    table = open_dataset(cfg, "agedb", tmp_path)
    mt = {"mode": "mtcnn", "margin": 0.4, "no_face": "quarantine", "min_prob": 0.9}
    cache = prepare(table, 32, mt, tmp_path, progress=False)
    assert len(cache) == 6 and dict(table.report.steps)["image quarantined: no face detected (MTCNN)"] == 1
    assert table.report.quarantine == [{"path": "9999_Nobody_40_m.jpg", "reason": "no face detected (MTCNN)"}]

    table = open_dataset(cfg, "agedb", tmp_path)
    kept = prepare(table, 32, {**mt, "no_face": "centre"}, tmp_path, progress=False)
    assert len(kept) == 7 and not table.report.quarantine
    assert np.array_equal(np.array(kept.images[:6]), np.array(cache.images))     # same faces, same crops
