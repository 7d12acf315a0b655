"""Same bytes on another machine: the demo suite is held to committed golden values, on this CPU
and under the kernels another CPU would pick, and the README's demo run folder is held to the
suite README line 1 generates.

Why: a fresh install on a machine without AVX-512 once generated other AgeDB and FG-NET JPEGs
(OpenBLAS picks its gemv kernel per CPU, and the grayscale scans' luminance went through it), so
every stage key and number of README line 1 differed from the README's.  A dependency or a CPU
that moves the suite's bytes must fail here, not silently change the keys."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cascade.data.synth import write_suite
from cascade.data.synth.render import _luminance

ROOT = Path(__file__).resolve().parents[1]
#: The bytes of every dataset of the suite at scale 0.05, seed 3 (tests/test_synth.py's suite),
#: as :func:`suite_digest` hashes them.  Regenerate only with a change that means to move the
#: suite (and so every demo stage key): bump SUITE_VERSION and regenerate results/ with it.
GOLDEN_SMALL = {"adience": "bfaa6762a7a41f78", "agedb": "31351c0aa2536c7b", "fgnet": "41643590004a213b",
                "imdb": "a81f7bbab7b56ba3", "utkface": "b83567ab6cf8a6c0", "wiki": "2ec8477ccb12de53"}
#: The results folder README line 1 writes (its header lists each dataset's manifest).
README_RUN = ROOT / "results" / "fgnet-demo-c2b130dd"
#: What a CPU without AVX-512 runs: OpenBLAS's Haswell kernels, numpy without its AVX-512 loops.
OTHER_CPU = {"OPENBLAS_CORETYPE": "Haswell",
             "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"}
DIGEST = """
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_reproducible import suite_digest
from cascade.data.synth import write_suite
write_suite(Path(sys.argv[1]), scale=0.05, seed=3, progress=False)
print(json.dumps(suite_digest(Path(sys.argv[1]))))
"""


def suite_digest(root: Path) -> dict[str, str]:
    """Per dataset folder, a sha256 over its files' relative paths and bytes."""
    out = {}
    for ds in sorted(p.name for p in root.iterdir() if p.is_dir()):
        h = hashlib.sha256()
        for f in sorted((root / ds).rglob("*")):
            if f.is_file():
                h.update(f.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        out[ds] = h.hexdigest()[:16]
    return out


def test_the_small_suite_has_its_golden_bytes(tmp_path):
    write_suite(tmp_path, scale=0.05, seed=3, progress=False)
    assert suite_digest(tmp_path) == GOLDEN_SMALL


def test_the_suite_has_the_same_bytes_under_another_cpus_kernels(tmp_path):
    """The kernels a machine without AVX-512 picks (fails without the BLAS-free luminance: the
    AgeDB scans' bytes move)."""
    env = {**os.environ, **OTHER_CPU}
    out = subprocess.run([sys.executable, "-c", DIGEST.format(tests=str(Path(__file__).parent)), str(tmp_path)],
                         env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == GOLDEN_SMALL


def test_luminance_is_one_rounded_fused_chain_whatever_blas_does():
    """The same bits as the chain fma(x2, w2, fma(x1, w1, x0 * w0)) computed exactly with Python
    fractions and rounded to float32 once per step (round half to even)."""
    from fractions import Fraction

    def f32(q: Fraction) -> np.float32:
        """q rounded to the nearest float32 (ties to even), without double rounding."""
        lo = np.float32(float(q))
        cands = [np.nextafter(lo, np.float32(-np.inf)), lo, np.nextafter(lo, np.float32(np.inf))]
        err = [abs(Fraction(float(c)) - q) for c in cands]
        best = min(err)
        ties = [c for c, e in zip(cands, err) if e == best]
        return min(ties, key=lambda c: int(np.float32(c).view(np.uint32)) & 1)

    rng = np.random.default_rng(5)
    a = rng.uniform(-20, 320, (40, 40, 3)).astype(np.float32)
    w = [Fraction(float(v)) for v in np.array([0.299, 0.587, 0.114], dtype=np.float32)]
    got = _luminance(a)
    for y, x in np.ndindex(40, 40):
        p = [Fraction(float(v)) for v in a[y, x]]
        acc = f32(p[0] * w[0])
        acc = f32(Fraction(float(acc)) + p[1] * w[1])
        acc = f32(Fraction(float(acc)) + p[2] * w[2])
        assert got[y, x] == acc, (y, x)


@pytest.mark.slow
def test_readme_line_1_generates_the_suite_its_results_folder_hashed(tmp_path):
    """The scale-1 demo suite's manifests are the ones the README's run folder recorded, so the
    stage keys (and numbers) README line 1 prints on a fresh install are the README's."""
    from cascade import config as C
    from cascade.data.datasets import demo_suite, open_dataset
    from cascade.store import stable_hash

    header = json.loads((README_RUN / "run.json").read_text())["header"]
    recorded = dict(re.findall(r"^Dataset (\w+) \(manifest (\w+)\)", "\n".join(header), re.M))
    assert set(recorded) == {"imdb", "agedb", "fgnet"}
    cfg = C.load([f"home={tmp_path}"])
    demo_suite(tmp_path, cfg["data"]["synth"]["scale"], cfg["data"]["synth"]["seed"], progress=False)
    made = {name: stable_hash(open_dataset(cfg, name, tmp_path).manifest_records())[:12] for name in recorded}
    assert made == recorded


@pytest.mark.heavy
def test_the_readme_run_folder_verifies():
    """`cascade verify` on the README's demo folder: README line 1 rebuilt from scratch (about 15
    min on 2 cores, portable numerics) gives its keys and every number.  A fresh process: the
    folder's `train.numerics=portable` must be set before anything computes."""
    out = subprocess.run([sys.executable, "-m", "cascade.cli", "verify", str(README_RUN), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified" in out.stdout and "NOT verified" not in out.stdout
