"""Folds placed on devices (cascade.stages.placement, workers.py): which fold lands
where, how many at once, threads each, the device a worker sees, the retry of a fold that ran
out of GPU memory, and dask tasks that ask for a GPU.  GPUs are faked: no test needs one."""
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from cascade import config as C
from cascade.runtime import device
from cascade.stages import workers as W
from cascade.stages.placement import Placement, placement

from conftest import FAST


def _cfg(*extra):
    return C.load([*FAST, *extra])


def test_folds_are_spread_over_every_gpu_k_at_a_time_with_cores_shared_out():
    four = placement(_cfg(), 82, gpus=4, cores=16)
    assert four.devices == ("cuda:0", "cuda:1", "cuda:2", "cuda:3")
    assert (four.workers, four.threads) == (4, 4)                      # one fold per GPU by default
    assert [four.device_of(w) for w in range(4)] == list(four.devices)

    two_each = placement(_cfg("folds_per_device=2"), 82, gpus=4, cores=16)
    assert (two_each.workers, two_each.threads) == (8, 2)
    landed = [two_each.device_of(w) for w in range(8)]
    assert all(landed.count(d) == 2 for d in four.devices)              # K = 2 folds per GPU at once

    chosen = placement(_cfg("devices=0,3"), 82, gpus=4, cores=16)
    assert chosen.devices == ("cuda:0", "cuda:3") and chosen.workers == 2
    assert [chosen.ordinal(w) for w in range(4)] == ["0", "3", "0", "3"]

    assert placement(_cfg(), 3, gpus=8, cores=16).workers == 3          # never more than the folds
    assert placement(_cfg("jobs=3"), 82, gpus=4, cores=16).workers == 3  # an explicit jobs wins
    assert placement(_cfg("train.threads=2"), 82, gpus=4, cores=16).threads == 2


def test_without_a_gpu_folds_run_one_per_core_as_before():
    cpu = placement(_cfg(), 82, gpus=0, cores=8)
    assert cpu.devices == ("cpu",) and not cpu.gpu and (cpu.workers, cpu.threads) == (8, 1)
    assert placement(_cfg("jobs=2"), 82, gpus=0, cores=8).threads == 4
    assert placement(_cfg("devices=cpu"), 82, gpus=4, cores=8).devices == ("cpu",)


def test_a_device_that_is_not_there_is_a_clear_error():
    with pytest.raises(ValueError, match=r"devices=5: 5 not usable; this process sees 4 visible GPU\(s\)"):
        placement(_cfg("devices=5"), 82, gpus=4, cores=8)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        placement(_cfg("devices=cuda"), 82, gpus=0, cores=8)
    with pytest.raises(C.ConfigError, match="GPU ordinals like 0,1,3"):
        _cfg("devices=gpu0")


class Seen:
    """A stand-in fold that records what its worker process sees."""

    def __init__(self, name: str, folder: str, cfg: dict):
        self.name, self.folder, self.cfg = name, folder, cfg

    def run(self, jobs: int) -> None:
        time.sleep(0.5)                  # long enough that every worker takes a fold
        Path(self.folder, self.name).write_text(" ".join(map(str, (
            os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), device(self.cfg), torch.get_num_threads(),
            torch.cuda.is_initialized()))))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="spawned workers timed on Linux")
def test_each_gpu_worker_is_pinned_to_its_device_before_cuda_starts(tmp_path):
    """Spawned workers, each seeing only its own GPU (CUDA_VISIBLE_DEVICES) as cuda:0, with its
    share of the threads, CUDA not started by the pinning; at most K workers per GPU."""
    cfg = _cfg()
    where = Placement(("cuda:0", "cuda:3"), workers=4, threads=1)
    assert W.run_folds([Seen(str(i), str(tmp_path), cfg) for i in range(4)], cfg, False, "t", where) == {}
    seen = [p.read_text().split() for p in tmp_path.iterdir()]
    assert len(seen) == 4 and os.getpid() not in {int(s[0]) for s in seen}
    assert all(s[1] in ("0", "3") and s[2:] == ["cuda:0", "1", "False"] for s in seen)
    gpu_of = {int(s[0]): s[1] for s in seen}
    assert all(list(gpu_of.values()).count(g) <= 2 for g in ("0", "3"))


class OutOfMemory:
    """A stand-in fold that runs out of GPU memory unless it accumulates gradients."""

    def __init__(self, folder: str, always: bool = False):
        self.name, self.folder, self.always = "oom", folder, always

    def run(self, jobs: int, accumulate: int = 1) -> None:
        Path(self.folder, f"try-{accumulate}").touch()
        if accumulate == 1 or self.always:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")


def test_a_fold_out_of_gpu_memory_is_retried_once_with_half_the_batch(tmp_path):
    assert W._attempt(OutOfMemory(str(tmp_path)), 1) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["try-1", "try-2"]
    err = W._attempt(OutOfMemory(str(tmp_path), always=True), 1)
    assert "out of memory (injected)" in err                   # then reported like any failed fold


class OnWorker:
    """A stand-in fold that records the dask worker it ran on and the device it was pinned to."""

    def __init__(self, name: str, folder: str, cfg: dict):
        self.name, self.folder, self.cfg = name, folder, cfg

    def run(self, jobs: int) -> None:
        from distributed import get_worker
        Path(self.folder, self.name).write_text(f"{get_worker().name} {device(self.cfg)}")


def test_dask_fold_tasks_ask_for_a_gpu_and_land_only_on_gpu_workers(tmp_path):
    """A cluster of one worker that declares a GPU (`--resources GPU=1`) and one that does not:
    every fold of a GPU run goes to the GPU worker and trains on its device; a CPU run uses both."""
    distributed = pytest.importorskip("distributed")
    workers = {name: {"cls": distributed.Nanny,
                      "options": {"nthreads": 1, "host": "127.0.0.1", **({"resources": {"GPU": 1}} if gpu else {})}}
               for name, gpu in (("gpu-worker", True), ("cpu-worker", False))}
    scheduler = {"cls": distributed.Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}}
    with distributed.SpecCluster(workers=workers, scheduler=scheduler) as cluster:
        cfg = _cfg("backend=dask", f"scheduler={cluster.scheduler_address}")
        gpu_run, cpu_run = tmp_path / "gpu", tmp_path / "cpu"
        for folder, where in ((gpu_run, Placement(("cuda:0",), 2, 1)), (cpu_run, Placement(("cpu",), 2, 1))):
            folder.mkdir()
            jobs = [OnWorker(str(i), str(folder), cfg) for i in range(8)]
            assert W.run_folds(jobs, cfg, False, "t", where) == {}
    assert {p.read_text() for p in gpu_run.iterdir()} == {"gpu-worker cuda:0"}
    assert {p.read_text().split()[1] for p in cpu_run.iterdir()} == {"cpu"}


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_the_cluster_recipe_starts_one_gpu_worker_per_job(system):
    """docs/recipes/cluster.py: every batch job asks the batch system for one GPU, starts one dask
    worker that declares `--resources GPU=K` (what the fold tasks ask for) and exports the shared
    $CASCADE_HOME.  Read from the job script dask-jobqueue would submit; nothing is submitted."""
    pytest.importorskip("dask_jobqueue")
    import importlib.util

    spec = importlib.util.spec_from_file_location("cluster_recipe", Path(__file__).parent.parent / "docs/recipes/cluster.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    with recipe.make_cluster(system, 8, "64GB", "48:00:00", "/shared/cascade", folds_per_gpu=2) as cluster:
        script = cluster.job_script()
    assert "--resources GPU=2" in script and "export CASCADE_HOME=/shared/cascade" in script
    assert ("#SBATCH --gres=gpu:1" if system == "slurm" else "#PBS -l select=1:ncpus=8:ngpus=1") in script
    assert "distributed.cli.dask_worker" in script and "--nthreads 8" in script


class Slots:
    """A stand-in fold that records the number of fold slots it was configured as one of."""

    def __init__(self, name: str, folder: str):
        self.name, self.folder = name, folder

    def run(self, jobs: int) -> None:
        Path(self.folder, self.name).write_text(str(jobs))


def test_a_last_fold_left_alone_trains_with_the_threads_of_the_full_run(tmp_path):
    """A resumed LOPO with one fold left runs it in the run's process, but as one of the run's
    two slots (cores / 2 threads), as the uninterrupted run did: the thread count splits
    reductions, so training it on all cores would change its numbers (found by crash-anywhere)."""
    cfg = _cfg("jobs=2")
    where = placement(cfg, 82, gpus=0, cores=2)
    assert W.run_folds([Slots("081", str(tmp_path))], cfg, False, "t", where) == {}
    assert (tmp_path / "081").read_text() == "2"


def test_the_cluster_recipe_asks_for_workers_only_when_the_folds_start(home, monkeypatch):
    """docs/recipes/cluster.py on a simulated batch system (a local dask cluster that starts
    its workers when the recipe scales it): the intermediate stage is trained before any worker
    is asked for, then the folds run on the workers and the results folder is written."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask_jobqueue")
    import importlib.util

    from conftest import FAST
    spec = importlib.util.spec_from_file_location("cluster_recipe", Path(__file__).parent.parent / "docs/recipes/cluster.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    asked = []

    class Batch:
        """A batch system that starts the worker jobs when asked (here: local processes)."""

        def __init__(self, *args, **kwargs):
            self.local = distributed.LocalCluster(n_workers=0, threads_per_worker=1, host="127.0.0.1",
                                                  dashboard_address=":0")
            self.scheduler_address = self.local.scheduler_address

        def scale(self, jobs: int) -> None:
            asked.append((jobs, sorted(p.name for p in (home / "stages").glob("*/COMPLETE.json"))))
            self.local.scale(jobs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.local.close()

    monkeypatch.setattr(recipe, "make_cluster", Batch)
    words = [*FAST, "stage=imdb", "target=fgnet", "stages.fgnet.protocol=hard-subjects",
             f"run.results_dir={home}/results"]
    assert recipe.main(["slurm", "--workers", "2", "--home", str(home), "--", *words]) == 0
    assert len(asked) == 1 and asked[0][0] == 2
    assert asked[0][1] == ["COMPLETE.json"]            # the IMDB stage was complete, nothing else
    folder = next((home / "results").glob("fgnet-demo-*"))
    assert (folder / "table.csv").exists()
