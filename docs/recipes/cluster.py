"""A study's folds on a SLURM or PBS cluster: dask-jobqueue starts one dask worker per GPU job,
each declaring `--resources GPU=K`, and the run sends every fold there (backend=dask).

Submit this script itself as a one-GPU job; it trains the intermediate stages on its own GPU
(several GPUs with `--gres=gpu:N` and `train.processes=N`), asks the batch system for the worker
jobs only then, when there are folds for them (no GPU waits through the IMDB and AgeDB stages),
hands them the target's folds, and writes the results like any run:

    sbatch --gres=gpu:1 --cpus-per-task=8 --mem=64G --time=48:00:00 --wrap \\
      "python docs/recipes/cluster.py slurm --workers 8 --home /shared/cascade -- \\
       stage=imdb,agedb target=fgnet backbone=vgg16"

(PBS: `qsub` the same command with `pbs`.)  Needs `pip install -e '.[cluster]'` in an
environment every node can run, and `--home` on a disk every node sees: the workers read the
image cache and write each fold's predictions into the same store.  Each fold task asks for
`GPU: 1`, so a worker runs at most K folds at once, on the one GPU its job was given
(CUDA_VISIBLE_DEVICES, set by the batch system), and no fold lands on a worker without a GPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def make_cluster(system: str, cores: int, memory: str, walltime: str, home: str,
                 folds_per_gpu: int = 1, python: str = sys.executable, extra: tuple[str, ...] = ()):
    """The dask-jobqueue cluster: each batch job is one dask worker with one GPU, `cores` CPU
    cores (its folds' data feed and host work), `folds_per_gpu` GPU resources, and
    $CASCADE_HOME exported.  `extra`: more batch directives (a partition, an account)."""
    from dask_jobqueue import PBSCluster, SLURMCluster

    gpu = {"slurm": ["--gres=gpu:1"], "pbs": [f"-l select=1:ncpus={cores}:ngpus=1"]}[system]
    cls = {"slurm": SLURMCluster, "pbs": PBSCluster}[system]
    return cls(cores=cores, memory=memory, processes=1, walltime=walltime, python=python,
               job_extra_directives=[*gpu, *extra],
               worker_extra_args=["--resources", f"GPU={folds_per_gpu}"],
               job_script_prologue=[f"export CASCADE_HOME={home}"],
               scheduler_options={"dashboard_address": ":0"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", choices=("slurm", "pbs"))
    ap.add_argument("--workers", type=int, default=4, help="GPU jobs to start (one dask worker each)")
    ap.add_argument("--folds-per-gpu", type=int, default=1)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--memory", default="64GB")
    ap.add_argument("--walltime", default="48:00:00")
    ap.add_argument("--home", required=True, help="$CASCADE_HOME on a disk every node sees")
    ap.add_argument("--directive", action="append", default=[], help="another batch directive (repeatable)")
    ap.add_argument("settings", nargs="*", metavar="key=value", help="the run's settings (after --)")
    args = ap.parse_intermixed_args(argv)     # the settings may follow the options (after --)
    from cascade import config as C
    from cascade.report.tables import run_and_write
    from cascade.stages import plan as P
    from cascade.stages.execute import Runner

    with make_cluster(args.system, args.cores, args.memory, args.walltime, args.home, args.folds_per_gpu,
                      extra=tuple(args.directive)) as cluster:
        settings = [*C.expand(args.settings), f"home={args.home}", "backend=dask",
                    f"scheduler={cluster.scheduler_address}", f"jobs={args.workers * args.folds_per_gpu}"]
        plans = [P.build(cfg) for cfg in C.per_seed(C.load(settings))]
        for plan in plans:                          # the intermediate stages, here, before any worker
            runner = Runner(plan, progress=False)
            for node in plan.nodes:
                if node.kind == "train":
                    runner.run_train(node)
        cluster.scale(jobs=args.workers)            # now there is work for them: the folds
        # the intermediate stages are cached now: this trains the folds
        md, folder = run_and_write(plans, Path(plans[0].cfg["run"]["results_dir"]), settings, progress=False)
        print(md)
        print(f"written to {folder}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
