"""The synthetic demo suite: formats, counts, planted noise, determinism, and a learnable signal."""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade.data.records import SYNTHETIC_MARKER, is_synthetic
from cascade.data.synth import Identity, render_face, suite_counts, write_suite
from cascade.data.synth.suite import (ADIENCE_GROUPS, ADIENCE_HEADER, BASE_COUNTS, DATASETS, MIN_COUNTS,
                                      _fgnet_base_counts, scaled)

SCALE = 0.05
SEED = 3

# the real datasets' file-name patterns
RE_IMDB = re.compile(r"^(\d{2})/nm(\d{7})_rm(\d{9})_(\d{4})-(\d{1,2})-(\d{1,2})_(\d{4})\.jpg$")
RE_AGEDB = re.compile(r"^(\d+)_([A-Z][A-Za-z]*)_(\d+)_([mf])\.jpg$")
RE_FGNET = re.compile(r"^(\d{3})A(\d{2})([ab]?)\.(JPG|jpg)$")
RE_UTK = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")
RE_UTK_BAD = re.compile(r"^(\d+)_([01])_(\d{17})\.jpg\.chip\.jpg$")
RE_ADIENCE_USER = re.compile(r"^\d+@N0\d$")
RE_ADIENCE_ORIG = re.compile(r"^\d{10,11}_[0-9a-f]{10}_o\.jpg$")
CANONICAL = {f"({lo}, {hi})" for lo, hi in ADIENCE_GROUPS}


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    counts = write_suite(out, scale=SCALE, seed=SEED, progress=False)
    return out, counts


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _adience_rows(root: Path) -> dict[int, list[list[str]]]:
    out = {}
    for k in range(5):
        lines = (root / "adience" / f"fold_{k}_data.txt").read_text().split("\n")
        assert lines[0].split("\t") == ADIENCE_HEADER
        assert lines[-1] == ""
        out[k] = [ln.split("\t") for ln in lines[1:-1]]
    return out


# ---------------------------------------------------------------------------------- counts


def test_count_formula():
    assert suite_counts(1.0) == {**BASE_COUNTS, "fgnet": {"images": 1002, "subjects": 82}}
    c = suite_counts(SCALE)
    assert c == {"imdb": {"rows": 300, "subjects": 20}, "agedb": {"images": 120, "subjects": 6},
                 "fgnet": {"images": 164, "subjects": 82}, "adience": {"rows": 150, "users": 13},
                 "utkface": {"images": 100}, "wiki": {"rows": 100, "subjects": 15}}
    tiny = suite_counts(0.001)
    assert tiny == MIN_COUNTS
    assert scaled(1002, 0.5, 164) == 501 and scaled(250, 0.05, 10) == 13   # floor(x + 0.5)


def test_fgnet_scale1_allocation():
    per = _fgnet_base_counts(0)
    assert per.sum() == 1002 and len(per) == 82
    assert per.min() >= 6 and per.max() <= 18


def test_counts_on_disk(suite):
    out, counts = suite
    assert counts == {"imdb": 300, "agedb": 120, "fgnet": 164, "adience": 150, "utkface": 100, "wiki": 100}
    assert len(list((out / "imdb").rglob("*.jpg"))) == 300
    assert len(list((out / "wiki").rglob("*.jpg"))) == 100
    assert len(list((out / "agedb").glob("*.jpg"))) == 120
    assert len(list((out / "fgnet" / "images").iterdir())) == 164
    assert len(list((out / "utkface").glob("*.jpg"))) == 100
    rows = _adience_rows(out)
    assert sum(len(r) for r in rows.values()) == 150
    unique = {(r[0], r[2], r[1]) for rs in rows.values() for r in rs}
    assert len(list((out / "adience" / "faces").rglob("*.jpg"))) == len(unique)
    import json
    meta = json.loads((out / "suite.json").read_text())
    assert meta["counts"] == counts and meta["seed"] == SEED and meta["scale"] == SCALE


def test_markers(suite):
    out, _ = suite
    assert (out / SYNTHETIC_MARKER).exists()
    for ds in DATASETS:
        text = (out / ds / SYNTHETIC_MARKER).read_text()
        assert "procedurally generated" in text and f"seed={SEED}" in text and f"scale={SCALE}" in text
        assert is_synthetic(out / ds)


def test_refuses_to_overwrite_real_data(tmp_path):
    (tmp_path / "fgnet").mkdir()
    (tmp_path / "fgnet" / "001A02.JPG").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        write_suite(tmp_path, scale=SCALE, progress=False)


# ---------------------------------------------------------------------------------- determinism


def test_deterministic(suite, tmp_path):
    out, counts = suite
    again = write_suite(tmp_path / "again", scale=SCALE, seed=SEED, progress=False)
    assert again == counts
    a, b = _files(out), _files(tmp_path / "again")
    assert sorted(a) == sorted(b)
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ[:5]


# ---------------------------------------------------------------------------------- formats


def test_wiki_part_is_read_by_the_real_loader_with_its_own_persons(suite):
    """The WIKI part: wiki.mat with struct key `wiki`, cleaned by the real loader (each rule
    counted), persons disjoint from the IMDB part's."""
    from cascade.data.formats import load
    from scipy.io import loadmat

    out, _ = suite
    assert loadmat(out / "wiki" / "wiki.mat")["wiki"].shape == (1, 1)
    wiki, imdb = load("wiki", out / "wiki"), load("imdb", out / "imdb")
    assert wiki.report.n_raw == 100 and 0 < len(wiki) < 100
    assert {rule.split(" ")[0] for rule, n in wiki.report.steps if n} >= {"age", "face_score"}
    assert not set(wiki.frame["subject"]) & set(imdb.frame["subject"])


def test_imdb_mat_layout_and_noise(suite):
    from scipy.io import loadmat

    out, _ = suite
    m = loadmat(out / "imdb" / "imdb.mat")
    assert m["imdb"].shape == (1, 1)
    d = m["imdb"][0, 0]
    assert set(d.dtype.names) == {"dob", "photo_taken", "full_path", "gender", "name", "face_location",
                                  "face_score", "second_face_score", "celeb_names", "celeb_id"}
    n = d["full_path"][0].shape[0]
    assert n == 300
    for f in ["dob", "photo_taken", "gender", "name", "face_location", "face_score", "second_face_score", "celeb_id"]:
        assert d[f].shape == (1, n), f
    path0 = d["full_path"][0][0][0]
    assert isinstance(path0, str) and RE_IMDB.match(path0)
    assert isinstance(d["dob"][0][0], (float, np.floating))
    assert np.issubdtype(d["photo_taken"][0].dtype, np.integer)
    assert isinstance(d["name"][0][0][0], str)
    assert d["face_location"][0][0].shape == (1, 4)
    names = {d["celeb_names"][0][k][0] for k in range(d["celeb_names"].shape[1])}
    ages, wrong = [], 0
    for i in range(n):
        rel = d["full_path"][0][i][0]
        mt = RE_IMDB.match(rel)
        assert mt, rel
        assert (out / "imdb" / rel).exists()
        dob = dt.date.fromordinal(int(d["dob"][0][i]) - 366)
        assert (dob.year, dob.month, dob.day) == tuple(int(x) for x in mt.group(4, 5, 6))
        assert int(mt.group(7)) == int(d["photo_taken"][0][i])
        assert int(mt.group(1)) == int(mt.group(2)) % 100
        assert d["celeb_names"][0][int(d["celeb_id"][0][i]) - 1][0] == d["name"][0][i][0] in names
        age = int(d["photo_taken"][0][i]) - dob.year - (1 if (dob.month, dob.day) > (7, 1) else 0)
        ages.append(age)
        wrong += not (0 <= age <= 100)
    ages = np.array(ages)
    score, second, gender = d["face_score"][0], d["second_face_score"][0], d["gender"][0]
    # the real kinds of noise are all present, at roughly the planned rates
    assert (ages < 0).any() and (ages > 100).any()
    assert 0.05 * n <= wrong <= 0.09 * n
    assert np.isneginf(score).any() and ((score > 0) & (score < 1)).any()
    assert 0.08 * n <= np.isfinite(second).sum() <= 0.12 * n
    assert np.isnan(gender).any() and set(np.unique(gender[~np.isnan(gender)])) == {0.0, 1.0}
    for i in np.flatnonzero(np.isneginf(score)):
        assert d["face_location"][0][i].tolist() == [[1.0, 1.0, 1.0, 1.0]]
    clean = np.isfinite(score) & (score >= 1) & np.isnan(second) & ~np.isnan(gender) & (ages >= 0) & (ages <= 100)
    assert 0.6 * n <= clean.sum() <= 0.8 * n
    assert np.median(ages[clean]) > 20 and np.mean((ages[clean] >= 15) & (ages[clean] <= 75)) > 0.8
    # face boxes lie in the canvas and are ~56-64 px wide
    for i in np.flatnonzero(clean)[:20]:
        x1, y1, x2, y2 = d["face_location"][0][i][0]
        with Image.open(out / "imdb" / d["full_path"][0][i][0]) as im:
            w, h = im.size
            assert im.mode == "RGB" and 90 <= w <= 102 and 90 <= h <= 102
        assert 45 <= x2 - x1 <= 75 and x1 > -10 and x2 < w + 10 and y1 > -10 and y2 < h + 10


def test_agedb_names(suite):
    out, _ = suite
    ids, by_name = [], defaultdict(set)
    for p in (out / "agedb").glob("*.jpg"):
        mt = RE_AGEDB.match(p.name)
        assert mt, p.name
        ids.append(int(mt.group(1)))
        by_name[mt.group(2)].add(mt.group(4))
        assert 1 <= int(mt.group(3)) <= 101
    assert sorted(ids) == list(range(1, 121))
    assert len(by_name) == 6 and all(len(g) == 1 for g in by_name.values())


def test_fgnet_layout(suite):
    out, _ = suite
    subj, ages, modes, sizes, suffixes, exts = Counter(), [], Counter(), set(), Counter(), Counter()
    for p in (out / "fgnet" / "images").iterdir():
        mt = RE_FGNET.match(p.name)
        assert mt, p.name
        subj[int(mt.group(1))] += 1
        ages.append(int(mt.group(2)))
        suffixes[mt.group(3)] += 1
        exts[mt.group(4)] += 1
        with Image.open(p) as im:
            modes[im.mode] += 1
            sizes.add(im.size)
            assert 56 <= im.size[0] <= 80 and 56 <= im.size[1] <= 80
    assert sorted(subj) == list(range(1, 83)) and min(subj.values()) >= 2
    assert 0 <= min(ages) and max(ages) <= 69
    assert np.mean(np.array(ages) < 20) > 0.6
    assert set(modes) == {"L", "RGB"} and 0.2 <= modes["L"] / 164 <= 0.4
    assert exts["jpg"] >= 1 and exts["JPG"] > 150
    assert suffixes["a"] == suffixes["b"] >= 1
    assert any(w != h for w, h in sizes)


def test_adience_folds_and_noise(suite):
    out, _ = suite
    rows = _adience_rows(out)
    fold_of_user = {}
    labels = Counter()
    for k, rs in rows.items():
        for r in rs:
            assert len(r) == 12
            assert RE_ADIENCE_USER.match(r[0]) and RE_ADIENCE_ORIG.match(r[1]), r
            assert fold_of_user.setdefault(r[0], k) == k, "user in two folds"
            assert r[4] in {"m", "f", "u", ""}
            assert all(re.fullmatch(r"-?\d+", v) for v in r[5:]) and r[2].isdigit()
            labels[r[3]] += 1
            assert (out / "adience" / "faces" / r[0] / f"coarse_tilt_aligned_face.{r[2]}.{r[1]}").exists()
    assert len(fold_of_user) == 13 and set(fold_of_user.values()) == set(range(5))
    typo = [k for k, rs in rows.items() for r in rs if r[3] == "(25, 23)"]
    assert typo and set(typo) == {0}
    assert labels["None"] >= 1
    assert any(lab.isdigit() for lab in labels)
    assert {"(27, 32)", "(38, 42)", "(38, 48)", "(8, 23)"} <= set(labels)
    assert sum(labels[c] for c in CANONICAL) / sum(labels.values()) > 0.6
    lines = [tuple(r) for rs in rows.values() for r in rs]
    assert any(c > 1 for c in Counter(lines).values()), "no exact duplicate rows"
    with Image.open(next((out / "adience" / "faces").rglob("*.jpg"))) as im:
        assert im.mode == "RGB" and im.size == (64, 64)


def test_utkface_names(suite):
    out, _ = suite
    good, bad, ages = 0, 0, []
    for p in (out / "utkface").glob("*.jpg"):
        mt = RE_UTK.match(p.name)
        if mt:
            good += 1
            ages.append(int(mt.group(1)))
        else:
            assert RE_UTK_BAD.match(p.name), p.name
            bad += 1
    assert (good, bad) == (97, 3)
    assert 1 <= min(ages) and max(ages) <= 116
    with Image.open(next((out / "utkface").glob("*.jpg"))) as im:
        assert im.mode == "RGB" and im.size == (64, 64)


# ---------------------------------------------------------------------------------- renderer


def _vec(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float32).ravel() / 255


def test_render_face_basic():
    idt = Identity.random(np.random.default_rng(0))
    a = render_face(idt, 30.0, np.random.default_rng(1), 64)
    b = render_face(idt, 30.0, np.random.default_rng(1), 64)
    assert a.mode == "RGB" and a.size == (64, 64)
    assert a.tobytes() == b.tobytes()
    for preset in ["studio", "wild", "scan"]:
        assert render_face(idt, 70.0, np.random.default_rng(2), 48, {"preset": preset}).size == (48, 48)


def test_identity_is_stable_across_ages():
    same, diff = [], []
    for k in range(30):
        rng = np.random.default_rng([11, k])
        a, b = Identity.random(rng), Identity.random(rng)
        age = float(rng.uniform(3, 75))
        x1 = _vec(render_face(a, age, rng, 64))
        x2 = _vec(render_face(a, age + 2.0, rng, 64))
        y1 = _vec(render_face(b, age, rng, 64))
        same.append(np.linalg.norm(x1 - x2))
        diff.append(np.linalg.norm(x1 - y1))
    assert np.mean(same) < 0.85 * np.mean(diff), (np.mean(same), np.mean(diff))


def test_age_is_learnable_from_pixels():
    """Ridge regression on 32 px grayscale pixels beats predicting the mean age by a wide margin."""
    from sklearn.linear_model import Ridge

    ids = [Identity.random(np.random.default_rng([21, k])) for k in range(120)]
    X, y, subj = [], [], []
    for i in range(720):
        rng = np.random.default_rng([22, i])
        age = float(rng.uniform(0, 80))
        img = render_face(ids[i % 120], age, rng, 64).convert("L").resize((32, 32), Image.BILINEAR)
        X.append(np.asarray(img, dtype=np.float32).ravel() / 255)
        y.append(age)
        subj.append(i % 120)
    X, y, subj = np.array(X), np.array(y), np.array(subj)
    train, test = subj < 90, subj >= 90                    # subject-exclusive split
    pred = Ridge(alpha=3.0).fit(X[train], y[train]).predict(X[test])
    mae = np.abs(pred - y[test]).mean()
    base = np.abs(y[train].mean() - y[test]).mean()
    assert mae < 0.7 * base, (mae, base)
