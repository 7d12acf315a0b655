"""`cascade plan`'s CPU estimate against a measured run of the same plan, side by side.

    python benchmarks/plan_estimate.py [key=value ...]

Builds a small cascade on the demo suite (IMDB stage, FG-NET hard-subjects target, both the
pretrained and the fine-tuned prefix), decodes its image caches (outside the clock: the
estimate leaves decoding out), asks the cost model for the wall time at the run's `jobs`, runs the
plan, and prints measured / estimated (the bound: within 25 %).  `jobs=1` by default; `jobs=0` (one
fold per core, the CPU default) or `jobs=N` as a setting.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from cascade import config as C
from cascade.stages import estimate
from cascade.stages import plan as P
from cascade.stages.execute import Runner


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="cascade-plan-"))
    settings = [f"home={home}", "data.synth.scale=0.25", "stage=imdb", "target=fgnet", "jobs=1",
                "stages.fgnet.protocol=hard-subjects", "backbones.demo.stages.imdb.epochs=8", *sys.argv[1:]]
    plan = P.build(C.load(settings))
    runner = Runner(plan, progress=False)
    for name in plan.tables:
        runner.cache(name)                             # decode once, outside both numbers
    jobs = int(plan.cfg["jobs"] or os.cpu_count() or 1)       # 0: one fold per core (the CPU default)
    est = estimate.estimate(plan, [jobs], [], measure=True)["cpu_hours_by_jobs"][jobs] * 3600
    start = time.perf_counter()
    runner.run()
    measured = time.perf_counter() - start
    ratio = measured / est
    print(f"store {home}; jobs={jobs}")
    print(f"estimated {est:7.1f} s   measured {measured:7.1f} s   measured / estimated {ratio:.2f}  "
          f"(target within 25 %: {'met' if abs(ratio - 1) <= 0.25 else 'NOT met'})")


if __name__ == "__main__":
    main()
