"""Real-looking folders that are not quite right: each is a clear error (folder, rule, examples,
what the loader expects) before any work, never a NaN cast or a library's traceback; and runs
that mix the user's data with the demo suite say so."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from cascade import config as C
from cascade.cli import main
from cascade.data.datasets import UnusableDataset, open_dataset, synthetic_sources
from cascade.report.header import data_line
from cascade.report.tables import mixed_data_line
from conftest import FAST


def photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (48, 48), (40 * i % 255, 90, 120)).save(folder / name)
    return folder


WRONG_NAMES = ["photo1.jpg", "photo2.jpg", "IMG_0003.jpg", "scan.png"]


@pytest.mark.parametrize("dataset, sub, expects", [
    ("fgnet", "images", "<subject>A<age>"),
    ("agedb", "", "<id>_<name>_<age>_<gender>.jpg"),
    ("utkface", "", "<age>_<gender>_<race>_<date>.jpg"),
])
def test_a_folder_of_wrongly_named_photos_stops_the_dry_run_with_examples(tmp_path, capsys, dataset, sub, expects):
    root = tmp_path / dataset
    photos(root / sub if sub else root, WRONG_NAMES)
    code = main(["run", "stage=", f"target={dataset}", f"data.root.{dataset}={root}", f"home={tmp_path / 'home'}",
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "this run cannot start" in err and f"data.root.{dataset}={root}" in err
    assert f"none of the {len(WRONG_NAMES)} rows" in err and "unparseable" in err
    assert "photo1.jpg" in err and expects in err                   # an example, and the rule it broke
    assert "NaN" not in err


def test_inspect_exits_non_zero_on_a_folder_without_a_usable_name(tmp_path, capsys):
    root = photos(tmp_path / "fgnet" / "images", WRONG_NAMES).parent
    assert main(["data", "inspect", "fgnet", f"data.root.fgnet={root}", f"home={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "photo1.jpg" in err and "001A02.JPG" in err


def test_inspect_names_quarantined_examples_beside_the_counts(tmp_path, capsys):
    root = photos(tmp_path / "fgnet" / "images", ["001A02.JPG", "001A05.JPG", "002A10.JPG", "photo1.jpg"]).parent
    assert main(["data", "inspect", "fgnet", f"data.root.fgnet={root}", f"home={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "unparseable name: -1" in out and "3 kept" in out
    assert "quarantined for unparseable name (1), e.g. images/photo1.jpg" in out


def test_garbage_adience_fold_files_are_a_clear_error(tmp_path, capsys):
    root = tmp_path / "adience"
    (root / "faces").mkdir(parents=True)
    for i in range(5):
        (root / f"fold_{i}_data.txt").write_text("garbage line\nmore junk\t\t\n")
    code = main(["run", "stage=", "target=adience", f"data.root.adience={root}", f"home={tmp_path / 'home'}",
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "none of the 10 rows" in err and "fold_0_data.txt:1" in err
    assert "fold_0_data.txt ... fold_4_data.txt" in err


def _imdb_mat(path):
    n = 4
    cells = np.empty((1, n), dtype=object)
    for i in range(n):
        cells[0, i] = np.array([f"01/nm{i}_rm{i}_1970-01-01_2000.jpg"])
    struct = {"dob": np.full((1, n), 719529.0), "photo_taken": np.full((1, n), 2000), "full_path": cells,
              "gender": np.ones((1, n)), "name": cells, "face_location": cells,
              "face_score": np.full((1, n), 3.0), "second_face_score": np.full((1, n), np.nan)}
    scipy.io.savemat(path, {"imdb": struct})


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_imdb_mat_is_a_clear_error_naming_the_file(tmp_path, capsys, damage):
    root = tmp_path / "imdb"
    root.mkdir()
    mat = root / "imdb.mat"
    if damage == "random bytes":
        mat.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        _imdb_mat(mat)
        mat.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable MATLAB file.*download it again"):
        open_dataset(C.load([f"data.root.imdb={root}"]), "imdb", tmp_path, require_files=False)
    code = main(["data", "inspect", "imdb", f"data.root.imdb={root}", f"home={tmp_path}", "--listing-only"])
    err = capsys.readouterr().err
    assert code == 2 and str(mat) in err and "Traceback" not in err


def test_a_utkface_folder_of_one_image_is_refused_before_any_work(tmp_path, capsys):
    root = photos(tmp_path / "utk", ["26_0_1_20170116174525125.jpg"])
    code = main(["run", "stage=", "target=utkface", f"data.root.utkface={root}", f"home={tmp_path / 'home'}",
                 "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "this run cannot start" in err
    assert "protocol holdout cannot split 1 usable image(s) of 1 subject(s)" in err


def test_unusable_dataset_is_a_value_error_with_the_loader_rule(tmp_path):
    root = photos(tmp_path / "agedb", WRONG_NAMES)
    with pytest.raises(UnusableDataset, match="0_MariaCallas_35_f.jpg"):
        open_dataset(C.load([f"data.root.agedb={root}"]), "agedb", tmp_path)


def _real_fgnet(tmp_path):
    return photos(tmp_path / "fgnet" / "images",
                  [f"{s:03d}A{a:02d}.JPG" for s in range(1, 5) for a in (3, 9, 20)]).parent


def test_a_run_mixing_real_and_synthetic_data_says_so_in_plan_and_header(home, tmp_path, capsys):
    root = _real_fgnet(tmp_path)
    words = FAST + [f"home={home}", "stage=imdb", "target=fgnet", f"data.root.fgnet={root}"]
    cfg = C.load(words)
    assert synthetic_sources(cfg) == {"imdb": True, "fgnet": False}
    assert main(["run", *words, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "data: MIXED fgnet real (data.root.*); imdb synthetic (the embedded demo suite)" in out
    line = data_line({"imdb": True, "fgnet": False})
    assert "mixed real and synthetic" in line and "imdb **synthetic**" in line and "fgnet real" in line
    # uniform runs keep the lines every results folder already has
    assert data_line({"imdb": True, "fgnet": True}) == data_line(True)
    assert data_line({"imdb": False}) == data_line(False)
    assert mixed_data_line(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"])) is None


def test_data_demo_forbid_refuses_a_stage_left_on_the_demo_suite(home, tmp_path, capsys):
    root = _real_fgnet(tmp_path)
    words = FAST + [f"home={home}", "stage=imdb,agedb", "target=fgnet", f"data.root.fgnet={root}", "data.demo=forbid"]
    assert main(["run", *words, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "data.root.imdb is empty or holds the synthetic demo suite, and data.demo=forbid" in err
    assert "data.root.agedb" in err and "data.root.fgnet" not in err


def test_data_sheet_draws_crops_as_the_stage_sees_them_and_the_quarantine(home, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "sheet", "fgnet", *FAST, f"home={home}", "--n", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"sheet written to {out}: crops 6, sample quarantined 0" in printed
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 300
    # a real-format folder: an unparseable name is shown among the quarantined rows
    root = photos(tmp_path / "real" / "images", ["001A02.JPG", "002A10.JPG", "photo1.jpg"]).parent
    out2 = tmp_path / "real.png"
    assert main(["data", "sheet", "fgnet", f"data.root.fgnet={root}", "data.crop=none", f"home={home}",
                 "--out", str(out2)]) == 0
    assert "crops 2, sample quarantined 0, loader quarantine shown 1" in capsys.readouterr().out


def test_sheet_crops_are_the_image_caches_crops(home, tmp_path):
    """The sheet draws through the cache's own functions: a sampled crop equals the cached row."""
    from cascade.data.cache import prepare
    from cascade.data.datasets import crop_settings
    from cascade.data.sheet import sample_crops

    cfg = C.load(FAST + [f"home={home}"])
    table = open_dataset(cfg, "fgnet", home)
    crop, size = crop_settings(cfg, table), C.backbone_settings(cfg)["input_size"]
    crops, bad = sample_crops(table, crop, size, 4, 0)
    cache = prepare(table, size, crop, home, progress=False)
    row = {p: i for i, p in enumerate(cache.table.frame["path"])}
    assert not bad and len(crops) == 4
    for c in crops:
        assert np.array_equal(c["pixels"], cache.images[row[c["path"]]])


def test_doctor_points_at_the_sheet(home, capsys):
    assert main(["doctor", *FAST, f"home={home}", "stage=imdb", "target=fgnet"]) == 0
    assert "`cascade data sheet imdb`; `cascade data sheet fgnet`" in capsys.readouterr().out


def _imdb_release(tmp_path, boxes_in_original: bool):
    """An IMDB-format folder of 12 photographs: full 200 px photos whose face_location fits them,
    or (a `_crop` release) 90 px face crops whose face_location still refers to a 600 px original."""
    root = tmp_path / ("imdb_crop" if boxes_in_original else "imdb")
    n = 12
    cells, boxes = np.empty((1, n), dtype=object), np.empty((1, n), dtype=object)
    for i in range(n):
        path = f"{i:02d}/nm{i:07d}_rm1_1970-01-01_2000.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        size = 90 if boxes_in_original else 200
        Image.new("RGB", (size, size), (30 + 15 * i, 90, 120)).save(root / path)
        cells[0, i] = np.array([path])
        boxes[0, i] = np.array([[300.0 + i, 250.0, 380.0 + i, 330.0]]) if boxes_in_original else \
            np.array([[60.0, 50.0, 140.0, 130.0]])
    names = np.empty((1, n), dtype=object)
    for i in range(n):
        names[0, i] = np.array([f"Person {i}"])
    scipy.io.savemat(root / "imdb.mat", {"imdb": {
        "dob": np.full((1, n), 719529.0), "photo_taken": np.full((1, n), 2000), "full_path": cells,
        "gender": np.ones((1, n)), "name": names, "face_location": boxes,
        "face_score": np.full((1, n), 3.0), "second_face_score": np.full((1, n), np.nan)}})
    return root


@pytest.mark.parametrize("release, mode", [("full", "box"), ("crop", "none")])
def test_auto_crop_reads_an_imdb_crop_release_whole(tmp_path, release, mode):
    from cascade.data.datasets import crop_settings

    root = _imdb_release(tmp_path, release == "crop")
    cfg = C.load([f"data.root.imdb={root}", "backbone=demo"])
    table = open_dataset(cfg, "imdb", tmp_path)
    assert crop_settings(cfg, table)["mode"] == mode
    assert any("_crop release" in n for n in table.report.notes) == (release == "crop")


def test_boxes_outside_their_image_are_quarantined_when_the_box_is_forced(tmp_path):
    from cascade.data.cache import prepare
    from cascade.data.datasets import crop_settings

    root = _imdb_release(tmp_path, True)
    cfg = C.load([f"data.root.imdb={root}", "data.crop=box", "backbone=demo"])
    table = open_dataset(cfg, "imdb", tmp_path)
    cache = prepare(table, 16, crop_settings(cfg, table), tmp_path, progress=False)
    assert len(cache) == 0
    assert dict(table.report.steps)["image quarantined: face box outside the image (the box refers to another picture)"] == 12
