"""Peak memory of an 82-fold LOPO run with `--jobs 2`, fold workers forked from the run (`fork`,
what `backend=auto` picks on Linux with one torch thread per fold) against fresh loky
interpreters, side by side on the same image cache, and the same LOPO with `--jobs 1` (one
process doing every fold alone).  The bound: the run's peak < 1.5 x one worker's RSS +
the cache's size (the cache must be shared, not copied per worker).

    python benchmarks/lopo_memory.py [--epochs 2] [--backends alone,fork,loky] [key=value ...]
    python benchmarks/lopo_memory.py --epochs 1 backbones.demo.input_size=224   # a real-size cache

Every process of the run is sampled from /proc every 0.1 s.  The run's memory is the sum of the
processes' PSS (each resident page counted once, a shared page split among the processes that
map it: the physical memory the run holds).  The sum of their RSS is printed beside it; it
counts a shared page (PyTorch's libraries, the memory-mapped cache, everything a forked worker
shares with its parent) once per process, so it grows with the number of processes whatever
is shared.  A worker's USS (the pages only it maps) is what running it really added.

"One worker's RSS" is read two ways, both printed.  (a) A worker of the same `--jobs 2` run: a
forked worker's RSS leaves out the pages only its parent touched (the parts of PyTorch's CUDA
libraries read at import), which the run's PSS counts, so this bound is stricter the more the
workers share.  (b) The one process of the `--jobs 1` run, which does each fold exactly as a
worker does, with everything a fold needs resident: the bound then asks what users ask,
"does `--jobs 2` cost less than 1.5 x the memory of `--jobs 1`, cache aside?".
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from cascade import config as C
from cascade.stages import plan as P
from cascade.stages.execute import Runner

MB = 2**20


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS in bytes of one process (zeros if it is gone)."""
    try:
        rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return {"rss": 0, "pss": 0, "uss": 0}
    f = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup[1:] if line.split()[1].isdigit()}
    return {"rss": f.get("Rss", 0), "pss": f.get("Pss", 0),
            "uss": f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)}


def _cache_private(pid: int, name: str) -> int:
    """Private dirty bytes of the memory mapping of file `name` in one process: a read-only file
    mapping's clean pages are the kernel's page cache, one copy for every process that maps the
    file; only dirty private pages would be a process's own copy."""
    try:
        lines = (Path("/proc") / str(pid) / "smaps").read_text().splitlines()
    except OSError:
        return 0
    private, inside = 0, False
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = line.rstrip().endswith(name)
        elif inside and head[0] == "Private_Dirty:":
            private += int(head[1]) * 1024
    return private


def measure(settings: list[str]) -> dict:
    """Run the target's folds (the cache built first, outside the sampling) and return the peaks."""
    plan = P.build(C.load(settings))
    target = plan.targets[0]
    shutil.rmtree(plan.home / "stages" / target.key, ignore_errors=True)
    runner = Runner(plan, progress=False)
    cache = runner.cache(target.stage)
    peak = dict.fromkeys(["rss", "pss", "worker_rss", "worker_pss", "worker_uss", "cache_private"], 0)
    stop = threading.Event()

    def sample():
        me = os.getpid()
        while not stop.is_set():
            procs = {pid: _memory(pid) for pid in _tree(me)}
            workers = [m for pid, m in procs.items() if pid != me]
            peak["rss"] = max(peak["rss"], sum(m["rss"] for m in procs.values()))
            pss = sum(m["pss"] for m in procs.values())
            if pss > peak["pss"]:        # what the run's peak is made of, at that moment
                own = sum(m["uss"] for m in procs.values())
                peak.update(pss=pss, at_peak=(pss - own, procs[me]["uss"], sorted(m["uss"] for m in workers)))
            for key in ("rss", "pss", "uss"):
                peak[f"worker_{key}"] = max([peak[f"worker_{key}"]] + [m[key] for m in workers])
            peak["cache_private"] = max([peak["cache_private"]] +
                                        [_cache_private(pid, "images.npy") for pid in procs if pid != me])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    runner.run_target(target)
    stop.set()
    sampler.join()
    return {**peak, "seconds": time.perf_counter() - start, "cache": (cache.path / "images.npy").stat().st_size,
            "images": len(cache)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--backends", default="alone,fork,loky", help="alone = --jobs 1")
    ap.add_argument("settings", nargs="*", metavar="key=value")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cascade-mem-"))
    base = [f"home={home}", "stage=", "target=fgnet", "run.prefixes=false", "train.mode=full",
            "train.threads=1", f"backbones.demo.stages.fgnet.epochs={args.epochs}", *args.settings]
    runs = {b: measure([*base, "jobs=1"] if b == "alone" else [*base, "jobs=2", f"backend={b}"])
            for b in args.backends.split(",")}
    alone = runs.pop("alone", None)
    first = next(iter(runs.values()))
    print(f"82-fold LOPO, {args.epochs} epoch(s) a fold; image cache {first['cache'] / MB:.1f} MB "
          f"({first['images']} images, memory-mapped)")
    if alone:
        print(f"--jobs 1 (alone): {alone['seconds']:.0f}s, the process's peak RSS {alone['rss'] / MB:.0f}M, "
              f"PSS {alone['pss'] / MB:.0f}M")
    print(f"{'backend':8} {'time':>6} {'run PSS':>9} {'run RSS':>9} {'worker RSS':>11} {'worker PSS':>11} "
          f"{'worker USS':>11}   bound (a) a worker of this run   bound (b) the --jobs 1 process")
    for name, r in runs.items():
        bounds = [1.5 * r["worker_rss"] + r["cache"]] + ([1.5 * alone["rss"] + r["cache"]] if alone else [])
        print(f"{name:8} {r['seconds']:5.0f}s {r['pss'] / MB:8.0f}M {r['rss'] / MB:8.0f}M {r['worker_rss'] / MB:10.0f}M "
              f"{r['worker_pss'] / MB:10.0f}M {r['worker_uss'] / MB:10.0f}M   " + "   ".join(
                  f"{b / MB:6.0f}M: {r['pss'] / b:4.2f} {'met' if r['pss'] < b else 'NOT met':<13}" for b in bounds)
              + f"  (cache pages copied into a worker: {r['cache_private'] / MB:.1f} MB)")
        if alone:
            print(f"         run PSS / the --jobs 1 run's PSS: {r['pss'] / alone['pss']:.2f}")
    if {"fork", "loky"} <= set(runs):
        print(f"run PSS loky / fork: {runs['loky']['pss'] / runs['fork']['pss']:.2f}; worker USS loky / fork: "
              f"{runs['loky']['worker_uss'] / runs['fork']['worker_uss']:.2f}")
    print("the run's peak, made of: pages shared by its processes (counted once) + the parent's own + each "
          "worker's own (USS: what nothing else maps)")
    for name, r in runs.items():
        shared, parent, workers = r["at_peak"]
        print(f"  {name:6} {shared / MB:6.0f} MB shared + parent {parent / MB:4.0f} MB + workers "
              f"{' + '.join(f'{w / MB:.0f}' for w in workers)} MB")
    print("bound = 1.5 x one worker's RSS + the cache, (a) and (b) as in the module doc.  Two folds in flight "
          "hold two folds' own working memory (activations, gradients, optimiser state), which no worker model "
          "can share; the run's peak depends on whether both reach theirs at once, so it varies between runs.")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
