"""Does `cascade data overlap` find the copies a web crawl makes of real photographs?

Planted copies of real FG-NET photographs (../shared/reference/fgnet, never copied into the
repository) are written under AgeDB's names in a scratch folder, each made the way crawled
copies are: re-encoded as JPEG, resized, a few pixels cut off every edge, shifted.  The harness
then audits the real FG-NET against that folder exactly as a run does (the loaders, the crop rule
of the backbone, the image cache, `overlap.audit` at the settings' thresholds) and reports, per
kind of copy, how many of the planted pairs it found (recall) and how many pairs it reported
that are not planted (false matches: two distinct photographs called one).  The distinct real
photographs of the reference's AgeDB faces are audited against FG-NET too: every pair found
there is false.

    python benchmarks/duplicate_recall.py [--copies 20] [--home DIR] [key=value ...]

Settings (e.g. `backbone=mobilefacenet`, `data.overlap.hamming=10`) are the run's; the default is
the demo backbone's 40 px MTCNN crops, what `cascade data overlap fgnet agedb` uses by default.
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from cascade import config as C
from cascade.data.cache import decode_rgb, prepare
from cascade.data.datasets import crop_settings, open_dataset
from cascade.data.overlap import audit

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def cut(im: Image.Image, px: int) -> Image.Image:
    return im.crop((px, px, im.width - px, im.height - px))


def resize(im: Image.Image, f: float) -> Image.Image:
    return im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BICUBIC)


def shift(im: Image.Image, f: float) -> Image.Image:
    dx, dy = round(im.width * f), round(im.height * f)
    return im.crop((dx, dy, im.width, im.height))               # a share off the left and top


#: The kinds of copy: name -> transformation of the original photograph.
COPIES = {
    "JPEG q70": lambda im: jpeg(im, 70),
    "80 % + 2 px cut + q70": lambda im: jpeg(cut(resize(im, 0.8), 2), 70),
    "50 % + q85": lambda im: jpeg(resize(im, 0.5), 85),
    "2 % shift + q80": lambda im: jpeg(shift(im, 0.02), 80),
    "3 % cut + 120 % + q75": lambda im: jpeg(resize(cut(im, round(0.03 * min(im.size))), 1.2), 75),
}


def plant(fgnet: Path, out: Path, n: int, seed: int) -> dict[str, tuple[str, str]]:
    """Copies of `n` FG-NET photographs per kind under AgeDB's names in `out`; returns each copy's
    file name -> (the original's path relative to the FG-NET root, kind)."""
    photos = sorted((fgnet / "images").glob("*.[Jj][Pp][Gg]"))
    picks = np.random.default_rng(seed).choice(len(photos), n, replace=False)
    out.mkdir(parents=True, exist_ok=True)
    planted = {}
    for k, (kind, make) in enumerate(COPIES.items()):
        for j, i in enumerate(picks):
            src = photos[i]
            age = int(src.stem.upper().split("A")[1][:2])
            name = f"{k * n + j}_Copy{k}Person{j}_{age}_m.jpg"
            make(decode_rgb(src)).save(out / name, "JPEG", quality=95)
            planted[name] = (str(src.relative_to(fgnet)), kind)
    return planted


def cached(cfg: dict, name: str, home: Path):
    """Dataset `name`'s image cache as a run builds it (its loader, the crop rule, the size)."""
    table = open_dataset(cfg, name, home)
    return prepare(table, C.backbone_settings(cfg)["input_size"], crop_settings(cfg, table), home, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=20, help="photographs copied per kind (default 20)")
    ap.add_argument("--home", type=Path, help="store (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    args, words = ap.parse_known_args()
    if not (REFERENCE / "fgnet" / "images").is_dir():
        raise SystemExit(f"{REFERENCE}/fgnet is missing: this benchmark needs the real FG-NET")
    home = args.home or Path(tempfile.mkdtemp(prefix="recall-"))
    planted = plant(REFERENCE / "fgnet", home / "planted-agedb", args.copies, args.seed)
    base = words + [f"home={home}", f"data.root.fgnet={REFERENCE / 'fgnet'}"]
    cfg = C.load(base + [f"data.root.agedb={home / 'planted-agedb'}"])
    rule = cfg["data"]["overlap"]
    fg, copies = cached(cfg, "fgnet", home), cached(cfg, "agedb", home)
    report = audit(fg, copies, ("fgnet", "agedb"), home, rule["hamming"], rule["colour"], progress=False)
    found = {(r.path_b, r.path_a) for r in report.pairs.itertuples()}
    in_cache = set(copies.table.frame["path"])
    print(f"# benchmarks/duplicate_recall.py: {args.copies} real FG-NET photographs per kind of copy, planted under "
          f"AgeDB names; backbone {cfg['backbone']} ({C.backbone_settings(cfg)['input_size']} px, crop "
          f"{crop_settings(cfg, fg.table)['mode']}); pHash within {rule['hamming']} bits and 8x8 colours within "
          f"{rule['colour']}")
    for kind in COPIES:
        names = [n for n, (_, k) in planted.items() if k == kind and n in in_cache]
        hits = sum((n, planted[n][0]) in found for n in names)
        print(f"{kind:24s}: found {hits:3d} of {len(names):3d} ({hits / max(len(names), 1):.0%})"
              + (f"; {args.copies - len(names)} copies quarantined by the crop rule" if len(names) < args.copies else ""))
    hits = sum((n, planted[n][0]) in found for n in planted if n in in_cache)
    false = [p for p in found if planted.get(p[0], ("",))[0] != p[1]]
    print(f"{'all copies':24s}: found {hits} of {len(in_cache)} ({hits / max(len(in_cache), 1):.1%}); "
          f"pairs that are not a copy and its original: {len(false)}")
    if (REFERENCE / "faces" / "agedb").is_dir():
        real = audit(fg, cached(C.load(base + [f"data.root.agedb={REFERENCE / 'faces' / 'agedb'}"]), "agedb", home),
                     ("fgnet", "agedb"), home, rule["hamming"], rule["colour"], progress=False)
        print(f"distinct real photographs (FG-NET x the reference's AgeDB faces): {len(real.pairs)} false matches")
    print(f"within FG-NET ({len(fg)} photographs): {len(report.within_a)} pairs reported")


if __name__ == "__main__":
    main()
