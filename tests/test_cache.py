"""Decoded-image cache: built once with a manifest table, bad files quarantined and counted,
damage detected by hash and repaired by rebuilding."""
import shutil

import numpy as np
import pandas as pd

from cascade import config as C
from cascade.data.cache import prepare
from cascade.data.datasets import open_dataset
from cascade.store import file_sha256

from conftest import FAST


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
    cache = prepare(table, 16, 0.4, tmp_path, progress=False)
    assert len(cache) == len(cache.table) == n - 3
    assert cache.images.shape == (n - 3, 16, 16, 3) and cache.images.dtype == np.uint8
    assert dict(table.report.steps)["undecodable or missing image file"] == 3
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
    first = prepare(open_dataset(cfg, "fgnet", tmp_path), 16, 0.4, tmp_path, progress=False)
    clean = np.array(first.images)
    path = first.path / "images.npy"
    del first
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF                                              # one flipped byte
    path.write_bytes(bytes(data))

    again = prepare(open_dataset(cfg, "fgnet", tmp_path), 16, 0.4, tmp_path, progress=False)
    assert "damaged" in capsys.readouterr().err
    assert np.array_equal(np.array(again.images), clean)

    stamp = path.stat().st_mtime_ns                                 # intact: reused, not rebuilt
    prepare(open_dataset(cfg, "fgnet", tmp_path), 16, 0.4, tmp_path, progress=False)
    assert path.stat().st_mtime_ns == stamp
