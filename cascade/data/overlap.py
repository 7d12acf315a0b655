"""Overlap between two datasets: the same person (by normalised name) or the same photo (by
perceptual hash) on both sides.

Why: a cascade pretrains on one dataset and tests on another, and the field's datasets share
people and press photos (IMDB, WIKI and AgeDB are all celebrities).  Subject-exclusive folds
only hold within one dataset; a stage that saw the test person, or the test photo itself,
inflates every number after it.  This module finds both kinds of overlap; it removes nothing.
"""
from __future__ import annotations

import dataclasses
import io
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.records import DatasetTable
from cascade.progress import bar as progress_bar

#: Default Hamming distance (of 64 bits) under which two pHashes are candidates for the same
#: photo.  A JPEG re-encode, a resize, a 2 % shift or crop move a pHash of a real face crop by at
#: most 8 bits; two different real photos sit near 32 (tests/test_overlap.py).
DEFAULT_THRESHOLD = 8

#: Default confirmation: the mean absolute difference (0-255) of the two crops' 8x8 RGB
#: thumbnails must not exceed this.  Why a second test: pHash is grey and keeps only the
#: layout, and every face crop has the same layout, so over thousands of faces a pHash alone
#: pairs different people (the demo suite's 40 px crops: 2,502 AgeDB x FG-NET pairs within 8
#: bits).  The same photograph keeps its colours.  Measured on 112 px crops of the real
#: reference photos: re-encoded and resized <= 2.2, a 2 % shift <= 6.2, 1 % cut off every side
#: <= 4.7, 2 % off every side up to 9.1 (33 of 41 found at the defaults, all at 10 / 10);
#: distinct real photos >= 18.8.  `data.overlap.colour=255` turns the test off.
DEFAULT_COLOUR = 7.0

#: Side of the image handed to pHash: it resizes to 32x32 itself, so more pixels buy nothing.
HASH_INPUT = 64
#: Side of the colour thumbnail of the confirmation test.
THUMB = 8
#: Bump when the fingerprints change (their files in $CASCADE_HOME/overlap are keyed by it).
HASH_VERSION = 1

#: Loaders whose tables carry a person's name, and where: AgeDB's subject *is* the name (from
#: its file names or listing); IMDB/WIKI keep it in the metadata's ``name`` field only.
#: FG-NET (numbers), Adience (Flickr user ids) and UTKFace (no identity at all) carry none.
NAMED = ("imdb", "wiki", "agedb")

def normalise_name(text: str) -> str:
    """A person's name in the one form two datasets are compared by.

    The rule, in order: Unicode NFKD and combining marks dropped (é -> e); a lower-to-upper
    case step split into two words (AgeDB's file names write ``LuiseRainer``); case folded;
    every character that is not a letter or digit (punctuation, ``_``, ``-``, ``.``) made a
    space; the words sorted and joined by one space.  So "Rainer, Luise", "Luise Rainer",
    "luise_rainer", "LuiseRainer" and "Luisé RAINER" are all "luise rainer".  Sorting loses
    the order of the parts on purpose: listings write "Last, First" as often as "First Last".
    """
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", text).casefold()
    words = re.sub(r"[\W_]+", " ", text).split()
    return " ".join(sorted(words))


def identity_names(table: DatasetTable, loader: str) -> pd.Series | None:
    """The normalised name of each row of `table` (aligned with its frame), or None when the
    dataset carries no names (FG-NET, Adience, UTKFace).  `loader` is the table's format."""
    if loader not in NAMED:
        return None
    if loader == "agedb":
        raw = table.frame["subject"]
    else:
        from cascade.data.formats.imdb import metadata_file, read_csv, read_mat

        source = metadata_file(table.root, loader)
        meta = read_mat(source, loader) if source.suffix.lower() == ".mat" else read_csv(source)
        raw = table.frame["path"].map(meta.drop_duplicates("path").set_index("path")["name"])
    return raw.fillna("").map(normalise_name)


def shared_identities(a: pd.Series, b: pd.Series) -> list[str]:
    """Normalised names present in both, sorted; the empty name is never an identity."""
    return sorted((set(a) & set(b)) - {""})


def phash64(image) -> np.uint64:
    """The 64-bit pHash of a PIL image as one unsigned integer (row-major bit order)."""
    import imagehash

    bits = imagehash.phash(image, hash_size=8).hash.ravel()
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def match_hashes(a: np.ndarray, b: np.ndarray | None = None, threshold: int = DEFAULT_THRESHOLD,
                 block: int = 2048) -> np.ndarray:
    """Pairs (i, j, distance) with Hamming distance <= `threshold` between uint64 hashes `a[i]`
    and `b[j]`, as an (n, 3) int64 array sorted by i, j.  `b=None` matches `a` within itself
    (pairs i < j only).  Work is XOR + popcount over `block` x `block` tiles, so memory stays
    near block**2 * 11 bytes whatever the sizes."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    within = b is None
    b = a if within else np.ascontiguousarray(b, dtype=np.uint64)
    found = []
    for i0 in range(0, len(a), block):
        for j0 in range(i0 if within else 0, len(b), block):
            dist = np.bitwise_count(a[i0:i0 + block, None] ^ b[None, j0:j0 + block])   # popcount
            hit = dist <= threshold
            if within:
                hit &= np.arange(i0, i0 + len(dist))[:, None] < np.arange(j0, j0 + dist.shape[1])[None, :]
            ii, jj = np.nonzero(hit)
            found.append(np.stack([ii + i0, jj + j0, dist[ii, jj]], axis=1).astype(np.int64))
    pairs = np.concatenate(found) if found else np.empty((0, 3), dtype=np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


@dataclasses.dataclass
class Prints:
    """Fingerprints of a dataset's cached face crops, row-aligned with its cache: the 64-bit
    pHash and the 8x8 RGB thumbnail of each crop."""

    hashes: np.ndarray               # (N,) uint64
    thumbs: np.ndarray               # (N, THUMB, THUMB, 3) uint8

    def take(self, rows: np.ndarray) -> "Prints":
        return Prints(self.hashes[rows], self.thumbs[rows])


def fingerprint(crop: np.ndarray) -> tuple[np.uint64, np.ndarray]:
    """(pHash, thumbnail) of one (H, W, 3) uint8 crop."""
    from PIL import Image

    im = Image.fromarray(np.asarray(crop))
    return (phash64(im.resize((HASH_INPUT, HASH_INPUT), Image.BILINEAR)),
            np.asarray(im.resize((THUMB, THUMB), Image.BOX), dtype=np.uint8))


def cache_prints(cache, home: Path, progress: bool = True) -> Prints:
    """The fingerprints of an ImageCache's crops (the pixels a stage trains on, so the crop
    rule is the run's own), computed once with one pass over the memory map and kept in
    `$CASCADE_HOME/overlap/<cache key>-v<HASH_VERSION>.npz`."""

    def compute() -> dict[str, np.ndarray]:
        n = len(cache.images)
        hashes, thumbs = np.zeros(n, dtype=np.uint64), np.zeros((n, THUMB, THUMB, 3), dtype=np.uint8)
        for i in progress_bar(range(n), desc=f"fingerprint {cache.table.name}", enabled=progress):
            hashes[i], thumbs[i] = fingerprint(cache.images[i])
        return {"hashes": hashes, "thumbs": thumbs}

    kept = _kept(Path(home) / "overlap" / f"{Path(cache.path).name}-v{HASH_VERSION}.npz", compute)
    return Prints(kept["hashes"], kept["thumbs"])


def _kept(path: Path, compute) -> dict[str, np.ndarray]:
    """The arrays stored at `path` (.npz), or `compute()`'s, stored there first (atomically): what
    is derived from an image cache is computed once per cache."""
    from cascade.store import atomic_write_bytes

    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    arrays = compute()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return arrays


def match_prints(a: Prints, b: Prints | None = None, threshold: int = DEFAULT_THRESHOLD,
                 colour: float = DEFAULT_COLOUR) -> pd.DataFrame:
    """Same-photo pairs: pHash within `threshold` bits (the blocked matcher), confirmed by the
    thumbnails' mean absolute difference <= `colour`.  Columns i, j (rows of a and b; b=None:
    within a, i < j), distance (bits), colour."""
    pairs = match_hashes(a.hashes, None if b is None else b.hashes, threshold)
    other = a if b is None else b
    diff = np.abs(a.thumbs[pairs[:, 0]].astype(np.int16) - other.thumbs[pairs[:, 1]]).mean(axis=(1, 2, 3))
    ok = diff <= colour
    return pd.DataFrame({"i": pairs[ok, 0], "j": pairs[ok, 1], "distance": pairs[ok, 2],
                         "colour": np.round(diff[ok], 2)})


@dataclasses.dataclass(frozen=True)
class FaceModel:
    """The optional third test, same face: a face-recognition backbone (a registered name, e.g.
    inception_resnet_v1 or mobilefacenet) with its imported weight file, fed at its own input
    size; two crops whose embeddings' cosine similarity reaches `cosine` are one person."""

    backbone: str
    weights: Path
    size: int
    cosine: float

    def key(self) -> dict:
        from cascade.models.weights import identity

        return {"backbone": self.backbone, "weights": identity(self.weights), "size": self.size,
                "cosine": self.cosine}


def cache_embeddings(cache, face: FaceModel, home: Path, progress: bool = True, batch: int = 128) -> np.ndarray:
    """L2-normalised embeddings (N, d) float32 of an ImageCache's crops by `face`: the pooled last
    conv map of its body (the layer an age head reads), each crop resized to the model's input
    size and preprocessed as its weights were trained.  Kept in $CASCADE_HOME/overlap/ per cache
    and weight file, like the fingerprints."""
    import torch
    import torch.nn.functional as F

    from cascade.models import AgeModel, build_backbone
    from cascade.models import weights as W
    from cascade.models.backbones import Preprocessing
    from cascade.store import stable_hash

    model = {k: v for k, v in face.key().items() if k != "cosine"}      # the threshold does not embed
    path = Path(home) / "overlap" / f"{Path(cache.path).name}-faces-{stable_hash(model, 12)}.npz"

    def compute() -> dict[str, np.ndarray]:
        bb = build_backbone(face.backbone)
        W.load_body(bb.body, face.weights)
        if pre := W.recorded_preprocessing(face.weights):
            bb.preprocessing = Preprocessing(pre["channels"], pre["scale"], tuple(pre["mean"]), tuple(pre["std"]))
        net = AgeModel(bb, 1, []).eval()
        out = [np.zeros((0, bb.channels), dtype=np.float32)]
        with torch.no_grad():
            for start in progress_bar(range(0, len(cache.images), batch), desc=f"embed {cache.table.name}",
                                      enabled=progress):
                x = torch.from_numpy(np.array(cache.images[start:start + batch])).permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=(face.size, face.size), mode="bilinear", antialias=True, align_corners=False)
                x = net.preprocessing.apply(x.round().clamp(0, 255).permute(0, 2, 3, 1))
                out.append(F.normalize(net.embed(x), dim=1).numpy().astype(np.float32))
        return {"embeddings": np.concatenate(out)}

    return _kept(path, compute)["embeddings"]


def match_faces(a: np.ndarray, b: np.ndarray | None, cosine: float, block: int = 4096) -> pd.DataFrame:
    """Pairs (i, j, cosine) of normalised embeddings with cosine similarity >= `cosine`, by
    blocked matrix products; `b=None`: within `a`, i < j."""
    within = b is None
    b = a if within else b
    found = []
    for i0 in range(0, len(a), block):
        sims = a[i0:i0 + block] @ b.T
        ii, jj = np.nonzero(sims >= cosine)
        keep = ii + i0 < jj if within else np.ones(len(ii), dtype=bool)
        found.append((ii[keep] + i0, jj[keep], sims[ii[keep], jj[keep]]))
    i, j, c = (np.concatenate(x) for x in zip(*found)) if found else (np.zeros(0, int),) * 2 + (np.zeros(0),)
    return pd.DataFrame({"i": i.astype(np.int64), "j": j.astype(np.int64), "cosine": np.round(c.astype(float), 4)})


@dataclasses.dataclass
class OverlapReport:
    """What two datasets share; `identities` is None when either side carries no names."""

    a: str
    b: str
    identities: list[str] | None
    pairs: pd.DataFrame          # columns path_a, path_b, distance, colour (across the two datasets)
    within_a: pd.DataFrame       # columns path_1, path_2, distance, colour (duplicates inside a)
    within_b: pd.DataFrame
    quarantined: list[str]       # rows whose image could not be cached, so were not compared
    faces: pd.DataFrame | None = None   # path_a, path_b, cosine: same face (when a FaceModel is given)

    def summary(self, examples: int = 5) -> str:
        lines = []
        if self.identities is None:
            lines.append(f"identities: not available ({self.a} or {self.b} carries no names)")
        else:
            lines.append(f"identities in both {self.a} and {self.b}: {len(self.identities)}"
                         + (f" (e.g. {', '.join(self.identities[:examples])})" if self.identities else ""))
        for title, frame in ((f"near-duplicate photos {self.a} x {self.b}", self.pairs),
                             (f"duplicates within {self.a}", self.within_a),
                             (f"duplicates within {self.b}", self.within_b)):
            lines.append(f"{title}: {len(frame)}")
            lines += [f"  {r[0]}  <->  {r[1]}  ({r[2]} bits, colour {r[3]})"
                      for r in frame.head(examples).itertuples(index=False)]
        if self.faces is not None:
            lines.append(f"same face {self.a} x {self.b}: {len(self.faces)}")
            lines += [f"  {r[0]}  <->  {r[1]}  (cosine {r[2]})" for r in self.faces.head(examples).itertuples(index=False)]
        lines += [f"not compared (quarantined): {f}" for f in self.quarantined]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """One row per finding (kind, left, right, distance, colour) for a CSV report."""
        parts = [pd.DataFrame({"kind": "identity", "left": self.identities or [],
                               "right": self.identities or [], "distance": -1, "colour": np.nan})]
        for kind, frame in (("duplicate", self.pairs), (f"within {self.a}", self.within_a),
                            (f"within {self.b}", self.within_b)):
            parts.append(pd.DataFrame({"kind": kind, "left": frame.iloc[:, 0], "right": frame.iloc[:, 1],
                                       "distance": frame["distance"], "colour": frame["colour"]}))
        if self.faces is not None:
            parts.append(pd.DataFrame({"kind": "face", "left": self.faces["path_a"], "right": self.faces["path_b"],
                                       "distance": -1, "colour": np.nan, "cosine": self.faces["cosine"]}))
        return pd.concat(parts, ignore_index=True)


def named_pairs(found: pd.DataFrame, left: pd.Series, right: pd.Series, names: tuple[str, str]) -> pd.DataFrame:
    """`match_prints` / `match_faces` rows with the paths of their two rows (`left[i]`,
    `right[j]`) in place of the row numbers; their measures (distance, colour, cosine) kept."""
    return pd.DataFrame({names[0]: left.to_numpy()[found["i"].to_numpy()],
                         names[1]: right.to_numpy()[found["j"].to_numpy()],
                         **{c: found[c].to_numpy() for c in found.columns if c not in ("i", "j")}})


def audit(a, b, loaders: tuple[str, str], home: Path, threshold: int = DEFAULT_THRESHOLD,
          colour: float = DEFAULT_COLOUR, progress: bool = True, face: FaceModel | None = None) -> OverlapReport:
    """Shared identities and same photos of two datasets' image caches (`cascade.data.cache.
    ImageCache`, as a run builds them), each one's duplicates within itself and, given a
    `face` model, the same faces across."""
    ta, tb = a.table, b.table
    names_a, names_b = identity_names(ta, loaders[0]), identity_names(tb, loaders[1])
    identities = None if names_a is None or names_b is None else shared_identities(names_a, names_b)
    pa, pb = cache_prints(a, home, progress), cache_prints(b, home, progress)
    path_a, path_b = ta.frame["path"], tb.frame["path"]
    return OverlapReport(
        a=ta.name, b=tb.name, identities=identities,
        pairs=named_pairs(match_prints(pa, pb, threshold, colour), path_a, path_b, ("path_a", "path_b")),
        within_a=named_pairs(match_prints(pa, None, threshold, colour), path_a, path_a, ("path_1", "path_2")),
        within_b=named_pairs(match_prints(pb, None, threshold, colour), path_b, path_b, ("path_1", "path_2")),
        quarantined=[f"{t.name} {q['path']}: {q['reason']}" for t in (ta, tb) for q in t.report.quarantine],
        faces=None if face is None else named_pairs(
            match_faces(cache_embeddings(a, face, home, progress), cache_embeddings(b, face, home, progress),
                        face.cosine), path_a, path_b, ("path_a", "path_b")))
