"""The demo suite's planted cross-dataset overlaps: exactly the documented shared persons and photo
copies, each one findable by the leakage audit's rule (cascade.data.overlap)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade.data.cache import square_box
from cascade.data.formats import load
from cascade.data.overlap import identity_names, normalise_name, phash64
from cascade.data.synth.suite import JPEG_QUALITY, PLANT_QUALITY, planted, write_suite

#: the audit's rule for "the same photo": pHash distance and 8x8 thumbnail difference
MAX_BITS, MAX_MAD = 8, 7.0
CLEAN = {"min_face_score": 1.0, "age_range": (0, 100)}     # defaults.yaml data.imdb_clean


@pytest.fixture(scope="module", params=[0.01, 0.05])
def suite(request, tmp_path_factory) -> Path:
    """The floors of MIN_COUNTS (0.01) and the scale the other synthetic tests use (0.05)."""
    out = tmp_path_factory.mktemp("planted")
    write_suite(out, scale=request.param, seed=0, progress=False)
    return out


def _tables(out: Path) -> dict:
    return {ds: load(ds, out / ds, **(CLEAN if ds in ("imdb", "wiki") else {}))
            for ds in ("imdb", "wiki", "agedb", "fgnet")}


def _crop(out: Path, rel: str, table) -> Image.Image:
    """The row's face crop as the image cache takes it, at 40x40."""
    inner = rel.split("/", 1)[1]
    row = table.frame.loc[table.frame["path"] == inner]
    assert len(row) == 1, f"{rel} is not a row that survives loading"
    box = row[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy(dtype=float)[0]
    with Image.open(out / rel) as im:
        im = im.convert("RGB")
        sq = (square_box(None, im.width, im.height, 0) if np.isnan(box).any()
              else square_box(tuple(box), im.width, im.height, 0.4))
        return im.crop(sq).resize((40, 40), Image.BILINEAR)


def _same_photo(a: Image.Image, b: Image.Image) -> tuple[int, float]:
    bits = (int(phash64(a.resize((64, 64), Image.BILINEAR))) ^ int(phash64(b.resize((64, 64), Image.BILINEAR)))).bit_count()
    mad = float(np.abs(np.asarray(a.resize((8, 8), Image.BOX), dtype=float)
                       - np.asarray(b.resize((8, 8), Image.BOX), dtype=float)).mean())
    return bits, mad


def test_planted_record_counts(suite):
    p = planted(suite)
    ids = Counter(tuple(x["datasets"]) for x in p["identities"])
    assert ids == {("imdb", "agedb"): 2, ("wiki", "agedb"): 1, ("imdb", "wiki"): 1}
    assert len({x["name"] for x in p["identities"]}) == 4
    kinds = Counter(d["kind"] for d in p["duplicates"])
    assert kinds == {"fgnet->imdb": 2, "fgnet->agedb": 2, "imdb->agedb": 3, "imdb->wiki": 2, "imdb->imdb": 2}
    paths = [d[k] for d in p["duplicates"] for k in ("a", "b")]
    assert len(set(paths)) == len(paths), "a row serves one planted copy only"
    for d in p["duplicates"]:
        src, dst = d["kind"].split("->")
        assert d["a"].split("/")[0] == src and d["b"].split("/")[0] == dst
        assert (suite / d["a"]).is_file() and (suite / d["b"]).is_file()


def test_shared_names_are_in_both_datasets_and_only_those(suite):
    tables = _tables(suite)
    names = {ds: set(identity_names(tables[ds], ds)) - {""} for ds in ("imdb", "wiki", "agedb")}
    want = {("imdb", "agedb"): set(), ("wiki", "agedb"): set(), ("imdb", "wiki"): set()}
    for x in planted(suite)["identities"]:
        want[tuple(x["datasets"])].add(normalise_name(x["name"]))
    for (a, b), expected in want.items():
        assert names[a] & names[b] == expected, (a, b)
    # AgeDB spells the name without the space, in its file names
    agedb_files = {p.name.split("_")[1] for p in (suite / "agedb").glob("*.jpg")}
    for x in planted(suite)["identities"]:
        if "agedb" in x["datasets"]:
            assert x["name"].replace(" ", "") in agedb_files


def test_planted_copies_match_under_the_audit_rule(suite):
    tables = _tables(suite)
    for d in planted(suite)["duplicates"]:
        a = _crop(suite, d["a"], tables[d["a"].split("/")[0]])
        b = _crop(suite, d["b"], tables[d["b"].split("/")[0]])
        bits, mad = _same_photo(a, b)
        assert bits <= MAX_BITS and mad <= MAX_MAD, (d, bits, mad)


def test_copies_are_reencoded_and_keep_clear_of_shared_persons(suite):
    p = planted(suite)
    tables = _tables(suite)
    shared = {normalise_name(x["name"]) for x in p["identities"]}
    for d in p["duplicates"]:
        with Image.open(suite / d["a"]) as a, Image.open(suite / d["b"]) as b:
            assert b.format == "JPEG" and a.quantization != b.quantization     # another JPEG quality
        for rel in (d["a"], d["b"]):
            ds, inner = rel.split("/", 1)
            names = identity_names(tables[ds], ds)
            if names is not None:
                assert names[tables[ds].frame["path"] == inner].iloc[0] not in shared, rel
    assert PLANT_QUALITY != JPEG_QUALITY


def test_within_imdb_copies_are_of_different_subjects(suite):
    imdb = _tables(suite)["imdb"].frame.set_index("path")
    pairs = [d for d in planted(suite)["duplicates"] if d["kind"] == "imdb->imdb"]
    assert len(pairs) == 2
    for d in pairs:
        a, b = (imdb.loc[d[k].split("/", 1)[1]] for k in ("a", "b"))
        assert a["subject"] != b["subject"]
