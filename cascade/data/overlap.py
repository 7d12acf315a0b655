"""Overlap between two datasets: the same person (by normalised name) or the same photo (by
perceptual hash) on both sides.

Why: a cascade pretrains on one dataset and tests on another, and the field's datasets share
people and press photos (IMDB, WIKI and AgeDB are all celebrities).  Subject-exclusive folds
only hold within one dataset; a stage that saw the test person, or the test photo itself,
inflates every number after it.  This module finds both kinds of overlap; it removes nothing.
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from cascade.data.records import DatasetTable

#: Default Hamming distance (of 64 bits) under which two pHashes count as the same photo.  A
#: JPEG re-encode, a resize or a few percent of crop move a pHash by well under 8 bits; two
#: different photos sit near 32 (tests/test_overlap.py measures both on real photos).
DEFAULT_THRESHOLD = 8

#: Side of the image handed to pHash: it resizes to 32x32 itself, so more pixels buy nothing.
HASH_INPUT = 64

#: Loaders whose tables carry a person's name, and where: AgeDB's subject *is* the name (from
#: its file names or listing); IMDB/WIKI keep it in the metadata's ``name`` field only.
#: FG-NET (numbers), Adience (Flickr user ids) and UTKFace (no identity at all) carry none.
NAMED = ("imdb", "wiki", "agedb")

_POPCOUNT16 = np.array([i.bit_count() for i in range(1 << 16)], dtype=np.uint8)


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


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64, via a 16-bit lookup table: numpy>=1.26 (the floor this project
    declares) lacks np.bitwise_count, and four lookups added column by column run ~3x faster
    than eight byte lookups summed with .sum (benchmarks/overlap.py)."""
    parts = _POPCOUNT16[x.view(np.uint16)].reshape(*x.shape, 4)
    return parts[..., 0] + parts[..., 1] + parts[..., 2] + parts[..., 3]


def match_hashes(a: np.ndarray, b: np.ndarray | None = None, threshold: int = DEFAULT_THRESHOLD,
                 block: int = 2048) -> np.ndarray:
    """Pairs (i, j, distance) with Hamming distance <= `threshold` between uint64 hashes `a[i]`
    and `b[j]`, as an (n, 3) int64 array sorted by i, j.  `b=None` matches `a` within itself
    (pairs i < j only).  Work is XOR + popcount over `block` x `block` tiles, so memory stays
    near block**2 * 20 bytes whatever the sizes."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    within = b is None
    b = a if within else np.ascontiguousarray(b, dtype=np.uint64)
    found = []
    for i0 in range(0, len(a), block):
        for j0 in range(i0 if within else 0, len(b), block):
            dist = _popcount(a[i0:i0 + block, None] ^ b[None, j0:j0 + block])
            hit = dist <= threshold
            if within:
                hit &= np.arange(i0, i0 + len(dist))[:, None] < np.arange(j0, j0 + dist.shape[1])[None, :]
            ii, jj = np.nonzero(hit)
            found.append(np.stack([ii + i0, jj + j0, dist[ii, jj]], axis=1).astype(np.int64))
    pairs = np.concatenate(found) if found else np.empty((0, 3), dtype=np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def hash_table(table: DatasetTable, progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """pHash of each row's face (its box when the table gives one, else the whole image), read
    through the project's decoder; returns (hashes, mask of rows hashed, "path: reason" of
    the rows that could not be decoded)."""
    from PIL import Image
    from tqdm import tqdm

    from cascade.data.cache import decode_file

    hashes = np.zeros(len(table), dtype=np.uint64)
    ok = np.zeros(len(table), dtype=bool)
    failed = []
    boxes = table.frame[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy()
    rows = enumerate(table.frame["path"])
    for i, rel in tqdm(rows, total=len(table), desc=f"phash {table.name}", disable=not progress):
        im, reason, _ = decode_file(Path(table.root) / rel)
        if im is None:
            failed.append(f"{rel}: {reason}")
            continue
        if not np.isnan(boxes[i]).any():
            im = im.crop(tuple(round(float(v)) for v in boxes[i]))
        hashes[i] = phash64(im.resize((HASH_INPUT, HASH_INPUT), Image.BILINEAR))
        ok[i] = True
    return hashes, ok, failed


@dataclasses.dataclass
class OverlapReport:
    """What two datasets share; `identities` is None when either side carries no names."""

    a: str
    b: str
    identities: list[str] | None
    pairs: pd.DataFrame          # columns path_a, path_b, distance (across the two datasets)
    within_a: pd.DataFrame       # columns path_1, path_2, distance (duplicates inside a)
    within_b: pd.DataFrame
    failed: list[str]

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
            lines += [f"  {r[0]}  <->  {r[1]}  (distance {r[2]})"
                      for r in frame.head(examples).itertuples(index=False)]
        lines += [f"undecodable, not hashed: {f}" for f in self.failed]
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """One row per finding (kind, left, right, distance) for a CSV report."""
        parts = [pd.DataFrame({"kind": "identity", "left": self.identities or [],
                               "right": self.identities or [], "distance": -1})]
        for kind, frame in (("duplicate", self.pairs), (f"within {self.a}", self.within_a),
                            (f"within {self.b}", self.within_b)):
            parts.append(pd.DataFrame({"kind": kind, "left": frame.iloc[:, 0], "right": frame.iloc[:, 1],
                                       "distance": frame.iloc[:, 2]}))
        return pd.concat(parts, ignore_index=True)


def _pair_frame(pairs: np.ndarray, left: pd.Series, right: pd.Series, names: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({names[0]: left.to_numpy()[pairs[:, 0]], names[1]: right.to_numpy()[pairs[:, 1]],
                         "distance": pairs[:, 2]})


def audit(a: DatasetTable, b: DatasetTable, loaders: tuple[str, str], threshold: int = DEFAULT_THRESHOLD,
          progress: bool = True) -> OverlapReport:
    """Shared identities and near-duplicate photos of two opened datasets, and each one's
    duplicates within itself.  Undecodable images are left out of the matching and listed."""
    names_a, names_b = identity_names(a, loaders[0]), identity_names(b, loaders[1])
    identities = None if names_a is None or names_b is None else shared_identities(names_a, names_b)
    (ha, ok_a, fa), (hb, ok_b, fb) = hash_table(a, progress), hash_table(b, progress)
    pa, pb = a.frame["path"][ok_a], b.frame["path"][ok_b]
    return OverlapReport(
        a=a.name, b=b.name, identities=identities,
        pairs=_pair_frame(match_hashes(ha[ok_a], hb[ok_b], threshold), pa, pb, ("path_a", "path_b")),
        within_a=_pair_frame(match_hashes(ha[ok_a], None, threshold), pa, pa, ("path_1", "path_2")),
        within_b=_pair_frame(match_hashes(hb[ok_b], None, threshold), pb, pb, ("path_1", "path_2")),
        failed=[f"{a.name} {f}" for f in fa] + [f"{b.name} {f}" for f in fb])
