"""What `train.numerics=portable` costs and what it buys, measured side by side in one run.

Four fresh stores train the same demo cascade (`cascade run` on the embedded suite, generated
once and linked into each): native and portable numerics, each on this CPU as it is and on
"another CPU" simulated by capping what the math libraries may use (AVX2 instead of AVX-512 for
PyTorch, MKL and oneDNN, OpenBLAS's Haswell kernel, glibc's variants without AVX-512).  Prints
each run's wall time, the portable/native time ratio, and whether the two CPUs' tables are
identical cell for cell (native: expected to differ; portable: expected identical).

    python benchmarks/numerics_cost.py [key=value ...]      (default: a shortened README line 1)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

OTHER_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512BW,-AVX512DQ,-AVX512VL"}
DEFAULT = ["stage=imdb,agedb", "target=fgnet", "backbones.demo.stages.imdb.epochs=3",
           "backbones.demo.stages.agedb.epochs=3"]
CASCADE = str(Path(sys.executable).with_name("cascade"))


def run(scratch: Path, name: str, settings: list[str], env: dict) -> tuple[float, pd.DataFrame]:
    """Wall seconds of one `cascade run` in a fresh store (the demo suite linked in) and its table."""
    home = scratch / name
    home.mkdir()
    (home / "demo").symlink_to(scratch / "suite" / "demo")
    start = time.perf_counter()
    subprocess.run([CASCADE, "run", *settings, f"home={home}", f"run.results_dir={home / 'results'}", "--quiet"],
                   env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    table = pd.read_csv(next((home / "results").glob("*/table.csv")))
    return seconds, table[table["status"] == "measured"].reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("settings", nargs="*", metavar="key=value")
    settings = ap.parse_args().settings or DEFAULT
    with tempfile.TemporaryDirectory(prefix="numerics-") as tmp:
        scratch = Path(tmp)
        # the demo suite once, outside the timings
        subprocess.run([CASCADE, "data", "inspect", "fgnet", f"home={scratch / 'suite'}"], check=True, stderr=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
        print(f"# benchmarks/numerics_cost.py: cascade run {' '.join(settings)}, fresh store each, "
              f"{os.cpu_count()} cores")
        results = {}
        for numerics in ("native", "portable"):
            for cpu, env in (("this CPU", {}), ("simulated AVX2 CPU", OTHER_CPU)):
                seconds, table = run(scratch, f"{numerics}-{len(results)}", [*settings, f"train.numerics={numerics}"], env)
                results[numerics, cpu] = seconds, table
                print(f"{numerics:8s} on {cpu:18s}: {seconds:7.1f} s   MAE {', '.join(f'{m:.6f}' for m in table['MAE'])}")
        for numerics in ("native", "portable"):
            a, b = results[numerics, "this CPU"][1], results[numerics, "simulated AVX2 CPU"][1]
            cols = [c for c in a.columns if c != "stage key"]
            same = a[cols].equals(b[cols])
            print(f"{numerics}: the two CPUs' tables are {'identical' if same else 'different'}"
                  + ("" if same else f" (largest MAE change {(a['MAE'] - b['MAE']).abs().max():.6f})"))
        ratio = results["portable", "this CPU"][0] / results["native", "this CPU"][0]
        print(f"portable / native wall time on this CPU: {ratio:.2f}x")


if __name__ == "__main__":
    main()
