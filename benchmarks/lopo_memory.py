"""Peak memory of an 82-fold LOPO run with `--jobs 2`: is the image cache shared by the fold
workers (memory-mapped), or copied into each?  (issue #6: peak RSS of the run < 1.5 x one
worker's + the cache's size.)

    python benchmarks/lopo_memory.py [--epochs 2] [--scale 1] [key=value ...]

Runs the demo FG-NET target (full fine-tuning, the caches built first, outside the sampling) and
samples every process of the run every 0.1 s from /proc: RSS (what the issue's bound counts; a
page of the shared memory map is counted in every process that touched it) and PSS (each shared
page divided among the processes that map it: the honest "is it copied?" number).
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


def _memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of one process (0, 0 if it is gone)."""
    try:
        rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup[1:] if line.split()[1].isdigit()}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def _mapping(pid: int, name: str) -> tuple[int, int]:
    """(RSS, private dirty bytes) of the memory mapping of file `name` in one process.  A read-only
    file mapping's clean pages are the kernel's page cache, one copy for every process that maps
    the file; only dirty private pages would be a process's own copy."""
    try:
        lines = (Path("/proc") / str(pid) / "smaps").read_text().splitlines()
    except OSError:
        return 0, 0
    rss = private = 0
    inside = False
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = line.rstrip().endswith(name)
        elif inside and head[0] in ("Rss:", "Private_Dirty:"):
            kb = int(head[1]) * 1024
            rss += kb if head[0] == "Rss:" else 0
            private += kb if head[0] != "Rss:" else 0
    return rss, private


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("settings", nargs="*", metavar="key=value")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="cascade-mem-"))
    plan = P.build(C.load([f"home={home}", "stage=", "target=fgnet", "run.prefixes=false", "train.mode=full",
                           "jobs=2", f"data.synth.scale={args.scale}",
                           f"backbones.demo.stages.fgnet.epochs={args.epochs}", *args.settings]))
    runner = Runner(plan, progress=False)
    cache = runner.cache(plan.targets[0].stage)
    cache_bytes = (cache.path / "images.npy").stat().st_size
    peak = {"rss": 0, "pss": 0, "worker_rss": 0, "worker_pss": 0, "cache_rss": 0, "cache_private": 0}
    stop = threading.Event()

    def sample():
        me = os.getpid()
        while not stop.is_set():
            procs = {pid: _memory(pid) for pid in _tree(me)}
            peak["rss"] = max(peak["rss"], sum(r for r, _ in procs.values()))
            peak["pss"] = max(peak["pss"], sum(p for _, p in procs.values()))
            workers = [m for pid, m in procs.items() if pid != me]
            mapped = [_mapping(pid, "images.npy") for pid in procs if pid != me]
            if mapped:
                peak["cache_rss"] = max(peak["cache_rss"], max(r for r, _ in mapped))
                peak["cache_private"] = max(peak["cache_private"], max(p for _, p in mapped))
            if workers:
                peak["worker_rss"] = max(peak["worker_rss"], max(r for r, _ in workers))
                peak["worker_pss"] = max(peak["worker_pss"], max(p for _, p in workers))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    runner.run_target(plan.targets[0])
    stop.set()
    sampler.join()
    mb = 2**20
    bound = 1.5 * peak["worker_rss"] + cache_bytes
    print(f"82-fold LOPO, --jobs 2, {time.perf_counter() - start:.0f} s; image cache {cache_bytes / mb:.1f} MB "
          f"({len(cache)} images)")
    print(f"  peak RSS of the run (all processes) {peak['rss'] / mb:8.1f} MB   PSS {peak['pss'] / mb:8.1f} MB")
    print(f"  peak RSS of one fold worker          {peak['worker_rss'] / mb:8.1f} MB   PSS {peak['worker_pss'] / mb:8.1f} MB")
    print(f"  the cache's mapping in a worker: {peak['cache_rss'] / mb:.1f} MB resident, "
          f"{peak['cache_private'] / mb:.1f} MB private dirty (0: the page cache, not a copy)")
    print(f"  bound 1.5 x worker RSS + cache        {bound / mb:8.1f} MB   run / bound {peak['rss'] / bound:.2f} "
          f"(target < 1: {'met' if peak['rss'] < bound else 'NOT met'}; the run is the parent and 2 workers, "
          f"each with its own Python + PyTorch runtime)")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
