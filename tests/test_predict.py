"""`cascade predict`: one row per face (or per file, with its reason) carrying the harness's own
decision rules and an 80 % posterior interval; faces cut as the stage's training images were;
odd and broken files never stop a batch; the header / sidecar names the stage key."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cascade import config as C
from cascade import metrics as M
from cascade.cli import main
from cascade.data.datasets import LabelSpace
from cascade.predict.ages import ages, class_name
from cascade.stages.execute import model_source
from cascade.stages.trained import chain_plan
from cascade.train.trainer import predict_proba

from conftest import FAST, REFERENCE

AGEDB = REFERENCE / "faces" / "agedb"


def test_posterior_quantiles_by_hand():
    values = [1.0, 2.0, 3.0, 4.0]
    p = [0.1, 0.2, 0.2, 0.5]
    assert [M.posterior_quantile(p, values, q) for q in (0.1, 0.3, 0.5, 0.9, 1.0)] == [1.0, 2.0, 3.0, 4.0, 4.0]
    assert M.posterior_quantile([0.05, 0.9, 0.05], [1, 2, 3], 0.1) == 2.0
    assert np.array_equal(M.posterior_quantile(np.array([p, p[::-1]]), values, 0.5), M.posterior_median(
        np.array([p, p[::-1]]), values))
    with pytest.raises(ValueError, match="quantile"):
        M.posterior_quantile(p, values, 0.0)


def test_rows_carry_the_harness_decision_rules_and_named_classes():
    labels = LabelSpace((0, 3, 10), (2, 9, 19))
    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]])
    rows = ages(probs, labels, top=2)
    rule = M.decisions(probs, labels.values)
    assert [r["expected_age"] for r in rows] == list(np.round(rule["pred_expected"], 2))
    assert [r["median_age"] for r in rows] == list(rule["pred_median"])
    assert rows[0]["age_p10"] == 1.0 and rows[0]["age_p90"] == 6.0
    assert rows[1]["top"] == [("10-19", 0.8), ("3-9", 0.15)]
    assert class_name(LabelSpace((35,), (35,)), 0) == "35"


def _words(home):
    return FAST + [f"home={home}"]


def test_given_crops_get_the_predictions_of_the_stage_on_its_own_cache(home, tmp_path, capsys):
    """`--faces given` on the demo AgeDB photographs (crops already: the stage's crop is `none`)
    gives, file for file, the expected ages the harness computes on its cached AgeDB images."""
    cfg = C.load(_words(home))
    plan, runner, node = chain_plan(cfg, ("imdb", "agedb"), progress=False)
    cache = runner.cache("agedb")
    out = tmp_path / "given.csv"
    root = cache.table.root
    assert main(["predict", "imdb,agedb", str(root), *_words(home), "--faces", "given", "--out", str(out),
                 "--quiet"]) == 0
    rows = pd.read_csv(out)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["stage_key"] == node.key and sidecar["faces"] == "given" and sidecar["detector"] is None
    labels = LabelSpace.from_json((plan.home / "stages" / node.key / "labels.json").read_text())
    model = model_source(plan, node).build(labels, cfg["seed"])
    want = M.decisions(predict_proba(model, cache.images, np.arange(len(cache)), "cpu"), labels.values)
    by_file = dict(zip(rows["file"], rows["expected_age"]))
    got = [by_file[str(root / p)] for p in cache.table.frame["path"]]
    np.testing.assert_allclose(got, np.round(want["pred_expected"], 2), atol=0.006)
    assert rows["reason"].isna().all() and rows["box_x1"].isna().all()
    assert (rows["age_p10"] <= rows["median_age"]).all() and (rows["median_age"] <= rows["age_p90"]).all()
    assert f"{len(rows)} files, {len(rows)} faces, 0 rows with a reason" in capsys.readouterr().out


def _odd_files(folder):
    """Every kind of file the decoder handles, and every kind it cannot."""
    folder.mkdir()
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.dstack([x * 4, y * 5, np.full((48, 64), 90)]).astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray((x * 1000).astype(np.uint16)).save(folder / "deep16.png")
    Image.fromarray(rgb).save(folder / "photo.webp")
    (folder / "sub").mkdir()
    Image.fromarray(rgb).save(folder / "sub" / "photo.bmp")
    exif = Image.Exif()
    exif[0x0112] = 6                                        # rotated 90°: read as 48 x 64
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (folder / "notes.txt").write_text("not searched")


def test_odd_and_broken_files_are_rows_never_a_crash(home, tmp_path, capsys):
    _odd_files(tmp_path / "in")
    (tmp_path / "nothing").mkdir()
    out = tmp_path / "p.jsonl"
    assert main(["predict", "imdb,agedb", str(tmp_path / "in"), str(tmp_path / "nothing"), str(tmp_path / "gone.jpg"),
                 *_words(home), "--faces", "given", "--out", str(out), "--annotate", str(tmp_path / "ann"),
                 "--quiet"]) == 0
    header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["header"]["stage"] == "pretrained → imdb → agedb" and header["header"]["counts"]["faces"] == 6
    reasons = {r["file"].split("/")[-1]: r["reason"] for r in rows}
    assert reasons["empty.jpg"] == "zero-byte file" and reasons["broken.png"].startswith("undecodable")
    assert reasons["gone.jpg"] == "no such file or folder" and "holds no" in reasons["nothing"]
    for name in ("cmyk.jpg", "gray.png", "deep16.png", "photo.webp", "photo.bmp", "rotated.jpg"):
        assert reasons[name] is None, name
    assert "notes.txt" not in reasons and len(rows) == 10
    with Image.open(tmp_path / "ann" / "in" / "sub" / "photo.bmp") as drawn:
        assert drawn.size == (64, 48)
    with Image.open(tmp_path / "ann" / "in" / "rotated.jpg") as drawn:
        assert drawn.size == (48, 64)                        # drawn on the upright photograph
    capsys.readouterr()
    # MTCNN on the same files: none holds a face, each says so in its row
    assert main(["predict", "imdb,agedb", str(tmp_path / "in"), *_words(home), "--out", str(tmp_path / "c.csv"),
                 "--quiet"]) == 0
    rows = pd.read_csv(tmp_path / "c.csv")
    assert len(rows) == 8 and rows["expected_age"].isna().all()
    assert (rows["reason"] == "no face detected (MTCNN)").sum() == 6 and rows["face"].isna().all()


def test_bad_command_lines_say_what_to_give(home, tmp_path, capsys):
    assert main(["predict", "imdb,agedb", *_words(home)]) == 2
    assert "at least one PATH" in capsys.readouterr().err
    assert main(["predict", "imdb,agedb", str(tmp_path), *_words(home), "--out", str(tmp_path / "p.txt")]) == 2
    assert ".csv or .jsonl" in capsys.readouterr().err
    assert main(["predict", "imdb", str(tmp_path), *_words(home), "--fit-all"]) == 2
    assert "not a target" in capsys.readouterr().err


def test_fit_all_fits_the_target_on_all_its_images_once(home, tmp_path, capsys):
    photos = sorted(home.glob("demo/*/fgnet/images/*"))[:3]
    words = ["predict", "fgnet", *map(str, photos), *_words(home), "stage=imdb", "--fit-all", "--faces", "given",
             "--out", str(tmp_path / "p.csv"), "--quiet"]
    assert main(words) == 0
    sidecar = json.loads((tmp_path / "p.json").read_text())
    assert sidecar["stage"] == "pretrained → imdb → fgnet (fitted on all fgnet images)"
    config = json.loads((home / "stages" / sidecar["stage_key"] / "config.json").read_text())
    assert config["kind"] == "fit_all" and config["stage"] == "fgnet" and "protocol" not in config
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3
    marker = (home / "stages" / sidecar["stage_key"] / "weights.safetensors").stat().st_mtime_ns
    assert main(words) == 0                                  # in the store: nothing is trained again
    assert (home / "stages" / sidecar["stage_key"] / "weights.safetensors").stat().st_mtime_ns == marker


@pytest.fixture(scope="module")
def reference_photos():
    if not AGEDB.is_dir():
        pytest.skip(f"{AGEDB} absent")
    pytest.importorskip("facenet_pytorch")
    return sorted(AGEDB.glob("*.jpg"))


def test_demo_cascade_on_the_real_agedb_photographs(reference_photos, home, tmp_path):
    """The issue's check: `cascade predict imdb,agedb ../shared/reference/faces/agedb` writes one
    row per photograph with ages and intervals."""
    out = tmp_path / "agedb.csv"
    assert main(["predict", "imdb,agedb", str(AGEDB), *_words(home), "--out", str(out), "--quiet"]) == 0
    rows = pd.read_csv(out)
    assert len(rows) == len(reference_photos) and rows["file"].nunique() == len(rows)
    found = rows[rows["reason"].isna()]
    assert len(found) >= len(rows) - 2 and (found["face_prob"] >= 0.9).all()
    assert (found["age_p10"] <= found["expected_age"]).all() and (found["expected_age"] <= found["age_p90"]).all()
    assert found["top"].str.count(":").eq(3).all()


def test_every_face_or_the_central_one(reference_photos, home, tmp_path):
    """Two portraits side by side: `all` gives a row per face, `central` the harness's one."""
    a, b = (Image.open(p).convert("RGB").resize((160, 160)) for p in reference_photos[:2])
    group = Image.new("RGB", (400, 200))
    group.paste(a, (20, 20))
    group.paste(b, (220, 20))
    group.save(tmp_path / "two.png")
    rows = {}
    for faces in ("all", "central"):
        assert main(["predict", "imdb,agedb", str(tmp_path / "two.png"), *_words(home), "--faces", faces,
                     "--out", str(tmp_path / f"{faces}.csv"), "--quiet"]) == 0
        rows[faces] = pd.read_csv(tmp_path / f"{faces}.csv")
    assert list(rows["all"]["face"]) == [0, 1] and len(rows["central"]) == 1
    centres = (rows["all"]["box_x1"] + rows["all"]["box_x2"]) / 2
    assert centres.min() < 200 < centres.max()                # one face on each side
