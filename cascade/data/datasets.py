"""From a config to a cleaned dataset table: user roots or the embedded synthetic suite, and
the ordered label space a stage classifies over."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np

from cascade.config import backbone_settings
from cascade.data.records import DatasetTable
from cascade.store import StageDir, atomic_write_json, stable_hash

#: stage dataset name -> (loader name, loader options)
DATASETS = {
    "imdb": ("imdb", {}),
    "wiki": ("wiki", {}),
    "agedb": ("agedb", {}),
    "fgnet": ("fgnet", {}),
    "adience": ("adience", {"groups": 8}),
    "adience3": ("adience", {"groups": 3}),
    "utkface": ("utkface", {}),
}

#: Images each real dataset holds, as published, for pricing a study before its data is here
#: (`cascade plan` on the demo suite): (count, source).
PUBLISHED_SIZES = {
    "imdb": (171_858, "IMDB after the thesis's cleaning (section 3; 460,723 before)"),
    "wiki": (62_328, "WIKI as released (Rothe et al. 2018), before cleaning"),
    "agedb": (16_488, "AgeDB (Moschoglou et al. 2017)"),
    "fgnet": (1_002, "FG-NET, 82 subjects"),
    "adience": (17_417, "Adience after the thesis's cleaning (section 3; 26,580 released)"),
    "adience3": (17_417, "Adience after the thesis's cleaning (section 3; 26,580 released)"),
    "utkface": (23_708, "UTKFace as released (Zhang et al. 2017)"),
}

#: Names the demo suite's folder: bump when the generator writes other bytes, so a store's old
#: suite is not reused (what each value changed: CHANGELOG.md).
SYNTH_VERSION = 5


class DemoSuiteMissing(FileNotFoundError):
    """The demo suite is not generated yet and the caller may not write (a dry run)."""


class UnusableDataset(ValueError):
    """A dataset folder that was read but leaves no usable row: the wrong folder, or files
    named or listed in a way its loader does not parse."""


#: How each loader's files must be named or listed: what an unusable folder's error shows.
NAMING = {
    "imdb": "imdb.mat (the IMDB-WIKI release's struct: full_path, dob, photo_taken, face_location, "
            "face_score, ...) or its CSV export, beside the images it lists",
    "wiki": "wiki.mat (the IMDB-WIKI release's struct) or its CSV export, beside the images it lists",
    "agedb": "images named <id>_<name>_<age>_<gender>.jpg (e.g. 0_MariaCallas_35_f.jpg), or AgeDB.json",
    "fgnet": "images named <subject>A<age>[a|b].JPG (e.g. 001A02.JPG), or FG-Net.json",
    "adience": "fold_0_data.txt ... fold_4_data.txt, tab-separated with the header user_id, original_image, "
               "face_id, age, gender, ... and ages such as (25, 32)",
    "utkface": "images named <age>_<gender>_<race>_<date>.jpg (e.g. 26_0_1_20170116174525125.jpg)",
    "appareal": "gt_avg_train.csv, gt_avg_valid.csv, gt_avg_test.csv (file_name, num_ratings, apparent_age_avg, "
                "apparent_age_std, real_age) beside the folders train/, valid/, test/ they list",
}


def demo_suite(home: Path, scale: float, seed: int, progress: bool = True, generate: bool = True) -> Path:
    """The synthetic suite under `$CASCADE_HOME/demo/<key>`, generated once (a killed
    generation leaves no marker and is regenerated from scratch).  `generate=False`: only an
    existing suite, else DemoSuiteMissing (nothing is written, not even a lock file)."""
    from cascade.data.synth.suite import write_suite

    folder = StageDir(Path(home) / "demo", "synth-" + stable_hash([SYNTH_VERSION, scale, seed], 10))
    if not generate and not folder.file("GENERATED.json").exists():
        raise DemoSuiteMissing(f"the demo suite is not generated yet ({folder.path}; about a minute on 2 cores "
                               f"at data.synth.scale=1)")
    with folder.lock():
        marker = folder.file("GENERATED.json")
        if not marker.exists():
            for child in folder.path.iterdir():
                if child.name != ".lock":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            counts = write_suite(folder.path, scale=scale, seed=seed, progress=progress)
            atomic_write_json(marker, {"scale": scale, "seed": seed, "counts": counts})
    return folder.path


def configured_root(cfg: dict, name: str) -> tuple[str, str]:
    """(the `data.root.<key>` dataset `name` reads, its value; "" = the demo suite)."""
    base = DATASETS[name][0]
    if base == "wiki" and not cfg["data"]["root"]["wiki"] and cfg["data"]["root"]["imdb"]:
        base = "imdb"                  # the two .mat files released side by side in one folder
    return base, cfg["data"]["root"][base]


def missing_root(cfg: dict, name: str) -> str | None:
    """The problem with dataset `name`'s configured folder (None: fine, or the demo suite): it
    does not exist, or it lacks the listing (or images) its loader reads first."""
    from cascade.data.formats import missing_files

    key, given = configured_root(cfg, name)
    if not given:
        return None
    if not Path(given).expanduser().is_dir():
        return f"data.root.{key}={given}: folder does not exist (point it at your copy of {key}, or leave it empty for the demo suite)"
    if problem := missing_files(DATASETS[name][0], Path(given).expanduser()):
        return f"data.root.{key}={given}: {problem}; point it at the folder that holds them (layouts: docs/data.md)"
    return None


def dataset_root(cfg: dict, name: str, home: Path, generate: bool = True) -> Path:
    if problem := missing_root(cfg, name):
        raise FileNotFoundError(problem)
    base, given = configured_root(cfg, name)
    if given:
        return Path(given).expanduser()
    return demo_suite(home, cfg["data"]["synth"]["scale"], cfg["data"]["synth"]["seed"], generate=generate) / base


def cleaning_settings(cfg: dict, name: str) -> dict:
    """The `data.*` cleaning rules the loader of dataset `name` applies (empty for a loader
    without settable rules).  Each stage's key holds its own dataset's rules and no other's, so
    changing `data.adience_policy` retrains Adience targets and leaves IMDB and AgeDB cached."""
    loader = DATASETS[name][0]
    if loader == "adience":
        return {"policy": cfg["data"]["adience_policy"], "variant": cfg["data"]["adience_variant"]}
    if loader in ("imdb", "wiki"):
        rules = cfg["data"]["imdb_clean"]
        return {"min_face_score": float(rules["min_face_score"]), "age_range": tuple(rules["age_range"])}
    return {}


def open_dataset(cfg: dict, name: str, home: Path, require_files: bool = True, generate: bool = True) -> DatasetTable:
    """Parse and clean one dataset with its registered loader; optionally subsample it.
    `require_files=False` reads the metadata alone (inspecting a listing without the images);
    `generate=False` never writes the demo suite (DemoSuiteMissing instead)."""
    from cascade.data.formats import load, options_of

    loader, options = DATASETS[name]
    options = dict(options)
    if not require_files and "require_files" in options_of(loader):
        options["require_files"] = False
    options.update(cleaning_settings(cfg, name))
    table = load(loader, dataset_root(cfg, name, home, generate), **options)
    table.name = name
    if len(table) == 0:
        raise UnusableDataset(unusable_text(cfg, name, table))
    spec = cfg["labels"].get(name)
    if spec and cfg["data"]["outside_labels"] == "drop":
        outside = outside_labels(table, spec)
        table.report.drop(f"age outside labels.{name}={spec}", int(outside.sum()))
        table.frame = table.frame[~outside].reset_index(drop=True)
    cap = cfg["data"]["max_images"]
    if cap and len(table) > cap:
        rng = np.random.default_rng(cfg["split_seed"])     # the data, like the test split, not the training seed
        keep = np.sort(rng.choice(len(table), cap, replace=False))
        table.report.drop(f"data.max_images={cap} subsample", len(table) - cap)
        table.frame = table.frame.iloc[keep].reset_index(drop=True)
    return table


def unusable_text(cfg: dict, name: str, table: DatasetTable) -> str:
    """Why a dataset folder gave no usable row: each rule's count, a few rejected rows as the
    quarantine names them, and how the loader expects its files (NAMING)."""
    key, given = configured_root(cfg, name)
    report = table.report
    steps = "; ".join(f"{rule} −{n}" for rule, n in report.steps if n) or "no rows"
    examples = ", ".join(f"{q.get('path', q.get('row'))} ({q['reason']})" for q in report.quarantine[:3])
    return (f"data.root.{key}={given or '(demo suite)'}: none of the {report.n_raw} rows read from {report.source} "
            f"is usable ({steps})" + (f"; e.g. {examples}" if examples else "") + ". "
            f"The {DATASETS[name][0]} loader reads {NAMING[DATASETS[name][0]]}: point data.root.{key} at a copy "
            f"of the dataset as published (layouts: docs/data.md), or rename its files to match")


def synthetic_sources(cfg: dict) -> dict[str, bool]:
    """Each stage of the run (intermediate stages, then the target) and whether it reads the
    synthetic demo suite: its `data.root.*` left empty, or pointing at a suite `cascade data
    synth` wrote.  From the settings alone, so a dry run can say it before any data exists."""
    from cascade.config import stage_params
    from cascade.data.records import is_synthetic

    out = {}
    for stage in dict.fromkeys([*cfg["stage"], cfg["target"]]):
        _, given = configured_root(cfg, stage_params(cfg, stage, "full")["dataset"])
        out[stage] = not given or is_synthetic(Path(given).expanduser())
    return out


#: What `data.crop=auto` means for each loader on real data (see defaults.yaml).
AUTO_CROP = {"imdb": "box", "wiki": "box", "agedb": "mtcnn", "fgnet": "mtcnn", "adience": "none",
             "utkface": "none"}


def boxes_fitting(table: DatasetTable, sample: int = 64) -> float | None:
    """The share of a sample of rows (drawn with a fixed seed) whose face box lies at least half
    inside its image, read from the image headers alone; None where no row has a box or no
    sampled image is readable (a listing inspected without its images)."""
    from PIL import Image

    from cascade.data.cache import box_inside

    frame = table.frame[table.frame["box_x1"].notna()]
    if frame.empty:
        return None
    rows = frame.iloc[np.sort(np.random.default_rng(0).choice(len(frame), min(sample, len(frame)), replace=False))]
    fits = []
    for r in rows.itertuples():
        try:
            with Image.open(table.root / r.path) as im:
                width, height = im.size
        except OSError:
            continue
        fits.append(box_inside((r.box_x1, r.box_y1, r.box_x2, r.box_y2), width, height) >= 0.5)
    return float(np.mean(fits)) if fits else None


def crop_settings(cfg: dict, table: DatasetTable) -> dict:
    """The resolved crop of one dataset: what its image cache (and every stage key) depends on.

    `data.crop=auto`: a backbone trained on aligned faces (one with an `align_template`, e.g.
    MobileFaceNet) gets `align` on real data; the others the dataset's own rule (`AUTO_CROP`).
    Synthetic faces are rendered centred, so auto never runs MTCNN on them.  IMDB / WIKI boxes
    that mostly do not fit their images (`boxes_fitting`) mean a `_crop` release, whose images
    are the faces already: auto then takes each image whole instead of a piece of it."""
    mode = cfg["data"]["crop"]
    own_template = backbone_settings(cfg).get("align_template")
    if mode == "auto":
        mode = "align" if own_template else AUTO_CROP[DATASETS[table.name][0]]
        mode = "none" if mode in ("mtcnn", "align") and table.synthetic else mode
        if mode == "box" and (share := boxes_fitting(table)) is not None and share < 0.5:
            mode = "none"                     # the images are the crops already (a _crop release)
            note = (f"face_location fits {share:.0%} of the sampled images: the boxes refer to the original "
                    f"photographs and the images are already face crops (the {table.name}_crop release's "
                    f"40 % margin): data.crop=auto uses each image whole (its centred square)")
            if note not in table.report.notes:
                table.report.notes.append(note)
    out = {"mode": mode, "margin": None if mode in ("none", "align") else cfg["data"]["margin"]}
    if mode in ("mtcnn", "align"):
        out.update(no_face=cfg["data"]["no_face"], min_prob=cfg["data"]["min_face_prob"],
                   select=cfg["data"]["face_select"])
    if mode == "align":
        out["template"] = own_template or "arcface112"
    return out


def label_ranges(spec: str, lo: int | None = None, hi: int | None = None) -> list[tuple[int, int]]:
    """The classes a `labels.<stage>` value stands for, as age ranges ordered by age:

    * `A-B`: one class per year from A to B (the thesis's rule over a fixed span);
    * `bins:0-2,3-9,10-19`: those ranges (sorted by their lower bound, never by text);
    * `equal:W` / `equal:W:A-B`: W-year ranges from A (default: the data's youngest age, rounded
      down to a multiple of W) up to B (default: the data's oldest age).

    Why ranges: the related studies classify over age ranges (UTKFace, IMDB-WIKI), and keeping
    classes as ordered ranges keeps class-index MAE, 1-off and the expected value meaningful."""
    def span(text: str) -> tuple[int, int]:
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
        if not m or int(m[1]) > int(m[2]):
            raise ValueError(f"labels {spec!r}: {text!r} is not an age range A-B with A <= B")
        return int(m[1]), int(m[2])

    if spec.startswith("bins:"):
        ranges = sorted(span(t) for t in spec[5:].split(",") if t.strip())
        for (a, b), (c, d) in zip(ranges, ranges[1:]):
            if c <= b:
                raise ValueError(f"labels {spec!r}: ranges {a}-{b} and {c}-{d} overlap")
        if len(ranges) < 2:
            raise ValueError(f"labels {spec!r}: give at least two ranges")
        return ranges
    if spec.startswith("equal:"):
        width, _, given = spec[6:].partition(":")
        if not width.isdigit() or int(width) < 1:
            raise ValueError(f"labels {spec!r}: expected equal:W or equal:W:A-B with a width W >= 1")
        w = int(width)
        if given:
            lo, hi = span(given)
        elif lo is None:
            raise ValueError(f"labels {spec!r}: the data's age range is needed (or give equal:W:A-B)")
        else:
            lo = lo // w * w
        return [(a, min(a + w - 1, hi)) for a in range(lo, hi + 1, w)]
    a, b = span(spec)
    if a == b:
        raise ValueError(f"labels {spec!r}: an age span A-B needs A < B (e.g. 0-100)")
    return [(age, age) for age in range(a, b + 1)]


def outside_labels(table: DatasetTable, spec: str) -> np.ndarray:
    """Rows whose age (range) lies in none of the classes of `spec`."""
    f = table.frame
    ranges = label_ranges(spec, int(f["age_lo"].min()), int(f["age_hi"].max()))
    lo, hi = f["age_lo"].to_numpy()[:, None], f["age_hi"].to_numpy()[:, None]
    inside = (lo >= np.array([r[0] for r in ranges])) & (hi <= np.array([r[1] for r in ranges]))
    return ~inside.any(1)


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Ordered classes (youngest first), each standing for an age range [lo, hi]; `values` are
    what the expected-value rule averages (the age, or the range's midpoint)."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @property
    def values(self) -> np.ndarray:
        return (np.asarray(self.lo, float) + np.asarray(self.hi, float)) / 2

    @property
    def exact_ages(self) -> bool:
        return self.lo == self.hi

    def __len__(self) -> int:
        return len(self.lo)

    def encode(self, age_lo: np.ndarray, age_hi: np.ndarray) -> np.ndarray:
        """The class of each label: the class range that contains the label's age range."""
        lo, hi = np.asarray(age_lo)[:, None], np.asarray(age_hi)[:, None]
        exact = (lo == np.asarray(self.lo)) & (hi == np.asarray(self.hi))
        inside = np.where(exact.any(1, keepdims=True), exact, (lo >= np.asarray(self.lo)) & (hi <= np.asarray(self.hi)))
        missing = ~inside.any(1)
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"{int(missing.sum())} labels lie in no class (e.g. age {int(lo[i, 0])}-{int(hi[i, 0])}; "
                             f"classes {self.lo[0]}-{self.hi[0]} ... {self.lo[-1]}-{self.hi[-1]})")
        return inside.argmax(1).astype(np.int64)

    def to_json(self) -> str:
        return json.dumps({"lo": self.lo, "hi": self.hi})

    @classmethod
    def from_json(cls, text: str) -> "LabelSpace":
        d = json.loads(text)
        return cls(tuple(d["lo"]), tuple(d["hi"]))

    @classmethod
    def of(cls, table: DatasetTable, classes: str | None = None) -> "LabelSpace":
        """The classes `classes` (`labels.<stage>`, see :func:`label_ranges`) when given; else
        integer ages min..max of the dataset when ages are exact (thesis: one class per year of
        the stage dataset's range), or the dataset's ordered age groups."""
        f = table.frame
        if classes:
            outside = outside_labels(table, classes)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise ValueError(f"{table.name}: labels={classes} but {int(outside.sum())} images have ages in "
                                 f"none of its classes (e.g. {f['path'].iloc[i]}: age {int(f['age_lo'].iloc[i])}-"
                                 f"{int(f['age_hi'].iloc[i])}; the data spans {int(f['age_lo'].min())}-"
                                 f"{int(f['age_hi'].max())}); data.outside_labels=drop removes them, counted")
            ranges = label_ranges(classes, int(f["age_lo"].min()), int(f["age_hi"].max()))
            return cls(tuple(r[0] for r in ranges), tuple(r[1] for r in ranges))
        if f["age"].notna().all():
            ages = list(range(int(f["age_lo"].min()), int(f["age_hi"].max()) + 1))
            return cls(tuple(ages), tuple(ages))
        pairs = sorted({(int(a), int(b)) for a, b in zip(f["age_lo"], f["age_hi"])})
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))
