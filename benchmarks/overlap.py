"""How long does `cascade data overlap` take on the real sizes?  Hashes per second (pHash of a
decoded image shrunk to 64 px, as cascade.data.overlap.hash_table does after decoding) and pairs
compared per second by the blocked Hamming matcher, on random data, with the projected time for
IMDB (~180,000 face crops) x AgeDB (~16,500 photos), both within-dataset passes included.

    python benchmarks/overlap.py [--images 300] [--hashes 20000]

Decoding the JPEGs is not counted (the image cache's benchmarks measure it); pairs grow as
n*m, so the matcher, not the hashing, decides whether a full audit is practical.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from cascade.data.overlap import HASH_INPUT, match_hashes, phash64

IMDB, AGEDB = 180_000, 16_500


def hashes_per_second(n: int, rng: np.random.Generator) -> float:
    images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(n)]
    start = time.perf_counter()
    for im in images:
        phash64(im.resize((HASH_INPUT, HASH_INPUT), Image.BILINEAR))
    return n / (time.perf_counter() - start)


def pairs_per_second(n: int, rng: np.random.Generator) -> float:
    a = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    b = rng.integers(0, 2**64, size=n // 2, dtype=np.uint64)
    start = time.perf_counter()
    match_hashes(a, b)
    return len(a) * len(b) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--hashes", type=int, default=20_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    hps, pps = hashes_per_second(args.images, rng), pairs_per_second(args.hashes, rng)
    pairs = IMDB * AGEDB + IMDB * (IMDB - 1) / 2 + AGEDB * (AGEDB - 1) / 2
    print(f"hashing: {hps:,.0f} images/s (224 px in, one core)")
    print(f"matching: {pps / 1e6:,.1f} M pairs/s")
    print(f"projected IMDB x AgeDB ({IMDB:,} x {AGEDB:,}, within each included, {pairs / 1e9:.1f} G pairs): "
          f"hashing {(IMDB + AGEDB) / hps / 60:.1f} min, matching {pairs / pps / 60:.1f} min")


if __name__ == "__main__":
    main()
