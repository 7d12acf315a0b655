"""How long does the leakage audit take at the real sizes?  Crops fingerprinted per second (pHash
and colour thumbnail read from a memory-mapped image cache, as every run's audit reads it) and
pairs compared per second (blocked Hamming matcher plus the colour confirmation of its
candidates), on the demo suite scaled up, with the projected time for IMDB (~180,000 face crops)
x AgeDB (~16,500 photos), both within-dataset passes included.

    python benchmarks/overlap.py [--home DIR] [--rows 60000]

The demo suite (scale 1) is generated in --home if it is not there.  Fingerprinting is timed on
the demo's 40 px crops and on 224 px crops (a VGG / ResNet run's cache); matching on the demo
IMDB's fingerprints tiled to --rows rows (each copy with a few bits flipped, so the tiles are
near-duplicates of each other and the confirmation has real work) against the demo AgeDB's.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cascade import config as C
from cascade.data.cache import prepare
from cascade.data.datasets import crop_settings, open_dataset
from cascade.data.overlap import Prints, cache_prints, match_prints

IMDB, AGEDB = 180_000, 16_500


def crops_per_second(home: Path, dataset: str, size: int) -> tuple[float, Prints]:
    cfg = C.load([f"home={home}", f"backbones.demo.input_size={size}"])
    table = open_dataset(cfg, dataset, home)
    cache = prepare(table, size, crop_settings(cfg, table), home, progress=False)
    start = time.perf_counter()
    prints = cache_prints(cache, Path(tempfile.mkdtemp()), progress=False)     # a fresh folder: computed, not read
    return len(cache) / (time.perf_counter() - start), prints


def scaled(prints: Prints, rows: int, rng: np.random.Generator) -> Prints:
    reps = -(-rows // len(prints.hashes))
    flips = [np.uint64(0)] + [np.uint64(1) << np.uint64(b) for b in rng.integers(0, 64, reps - 1)]
    hashes = np.concatenate([prints.hashes ^ f for f in flips])[:rows]
    return Prints(hashes, np.concatenate([prints.thumbs] * reps)[:rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="cascade-overlap-"))
    rate40, imdb = crops_per_second(home, "imdb", 40)
    rate224, agedb = crops_per_second(home, "agedb", 224)
    big = scaled(imdb, args.rows, np.random.default_rng(0))
    start = time.perf_counter()
    found = match_prints(big, agedb)
    pps = len(big.hashes) * len(agedb.hashes) / (time.perf_counter() - start)
    pairs = IMDB * AGEDB + IMDB * (IMDB - 1) / 2 + AGEDB * (AGEDB - 1) / 2
    print(f"fingerprinting: {rate40:,.0f} crops/s at 40 px (the demo's), {rate224:,.0f} crops/s at 224 px (one core)")
    print(f"matching: {pps / 1e6:,.1f} M pairs/s ({len(big.hashes):,} demo IMDB crops, tiled, x {len(agedb.hashes):,} "
          f"demo AgeDB; {len(found):,} pairs confirmed)")
    print(f"projected IMDB x AgeDB ({IMDB:,} x {AGEDB:,}, within each included, {pairs / 1e9:.1f} G pairs): "
          f"fingerprinting {(IMDB + AGEDB) / rate224 / 60:.1f} min at 224 px, matching {pairs / pps / 60:.1f} min")


if __name__ == "__main__":
    main()
