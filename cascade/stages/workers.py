"""Where fold jobs run: worker processes forked from this one, loky processes, or a dask cluster.

Why fork: a fold worker needs PyTorch, and a fresh interpreter that imports it (loky, spawn)
carries its own ~500 MB of relocated libraries and module objects.  A forked worker shares the
parent's pages copy-on-write, so an 82-fold LOPO with `--jobs 2` costs one runtime plus what
each fold allocates, and the memory-mapped image cache stays one page-cache copy in any case.

Why only sometimes: GNU OpenMP (PyTorch's intra-op pool) is not fork-safe.  A child that enters a
multi-threaded parallel region after its parent used one hangs for ever.  A child that runs its
torch ops on one intra-op thread never touches the inherited pool; PyTorch's own DataLoader
workers rely on the same rule.  So `backend=auto` forks only on Linux, when every fold
gets one torch thread (`jobs` = cores, the default, or `train.threads=1`), and when CUDA is not
initialised here.  Otherwise it uses loky, whose workers are fresh interpreters.

On GPUs (stages/placement.py) every worker is a spawned interpreter pinned to one device before
CUDA starts in it: CUDA_VISIBLE_DEVICES names its GPU, so it trains on `cuda:0` and cannot touch
another card, and nothing is forked from a parent whose CUDA is already running.  A fold that runs
out of GPU memory is retried once with half the batch and twice the gradient accumulation (the
same effective batch; its history says so).
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import repeat
from pathlib import Path

import torch

from cascade.progress import bar as progress_bar
from cascade.stages import FoldsFailed, log_to
from cascade.stages.placement import Placement, pin, placement, threads_per_job

_LIBC = ctypes.CDLL(None)


def fork_is_safe(cfg: dict, jobs: int) -> bool:
    """True when workers forked from this process cannot hang or break (see the module doc)."""
    return (sys.platform.startswith("linux") and threads_per_job(cfg, jobs) == 1
            and not torch.cuda.is_initialized())


def local_backend(cfg: dict, jobs: int) -> str:
    """`fork` or `loky` for `backend=auto|fork|loky`; `fork` where it is unsafe is an error."""
    wanted = cfg["backend"]
    if wanted == "auto":
        return "fork" if fork_is_safe(cfg, jobs) else "loky"
    if wanted == "fork" and not fork_is_safe(cfg, jobs):
        raise ValueError(f"backend=fork needs Linux, one torch thread per fold (jobs={jobs} gives "
                         f"{threads_per_job(cfg, jobs)}: set train.threads=1 or jobs to the core count) "
                         "and CUDA not yet initialised in this process; backend=auto falls back to loky")
    return wanted


def _attempt(job, jobs: int, device: str | None = None) -> str | None:
    """Run a fold (anything with `.name` and `.run(jobs)`), retrying once; return the error text
    if both attempts fail.  `device`: pin this process to it first (a dask worker's own device).
    A fold that ran out of GPU memory is retried with `accumulate=2`: half the batch per step,
    gradients of two steps summed, so the effective batch is the same."""
    if device is not None:
        pin(device)
    err, retry = None, {}
    for _ in range(2):
        try:
            job.run(jobs, **retry)
            err = None
        except torch.cuda.OutOfMemoryError:
            err = traceback.format_exc(limit=3)
            retry = {"accumulate": 2}
        except Exception:
            err = traceback.format_exc(limit=3)
        release_memory()        # outside the handler: the failed attempt's frames and tensors are gone
        if err is None:
            break
    return err


def release_memory() -> None:
    """Hand a finished fold's freed memory back to the system.  glibc keeps freed heap pages for
    reuse, and the next fold's differently sized tensors fragment them: over 82 LOPO folds a
    worker grew by ~130 MB (measured) without this, and by nothing with it."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)    # glibc only
    if trim is not None:
        trim(0)
    if torch.cuda.is_initialized():               # the caching allocator's blocks, for the next fold
        torch.cuda.empty_cache()


def _forked_worker(parent: int) -> None:
    """First thing in a forked worker: die with the parent (a killed run must not leave workers
    holding the stage lock they inherited), and keep every thread pool at one thread."""
    PR_SET_PDEATHSIG = 1
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:         # the parent died before prctl took effect
        os._exit(1)
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    torch.set_num_threads(1)


@contextlib.contextmanager
def _forked(n: int, slots: int, jobs: list):
    """(job, error or None) pairs, in order, from `n` workers forked from this process, each fold
    configured as one of `slots`.  A worker
    lives for many folds: a fresh fork per fold would redo PyTorch's per-process kernel set-up
    every fold (the demo LOPO took twice as long) and, since the shared part shrinks with it,
    would not change how the run compares with one worker.  The collector is frozen and free heap
    pages are handed back before forking, so that neither side's garbage collection or new
    allocations copy shared pages needlessly."""
    release_memory()
    gc.freeze()
    try:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_forked_worker, initargs=(os.getpid(),)) as pool:
            yield zip(jobs, pool.map(_attempt, jobs, repeat(slots)))
    finally:
        gc.unfreeze()


def _pinned_worker(slots, threads: int) -> None:
    """First thing in a spawned GPU worker: take a device from `slots` and make it the only GPU
    this process sees, before anything here starts CUDA; `threads` torch threads."""
    ordinal = slots.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = ordinal
    pin("cuda:0")
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _spawned(where: Placement, n: int, jobs: list):
    """(job, error or None) pairs, in order, from `n` spawned interpreters, worker w pinned to
    `where.device_of(w)`: K workers per GPU for K = folds_per_device."""
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for w in range(n):
        slots.put(where.ordinal(w))
    with ProcessPoolExecutor(n, mp_context=ctx, initializer=_pinned_worker,
                             initargs=(slots, where.threads)) as pool:
        yield zip(jobs, pool.map(_attempt, jobs, repeat(where.workers)))


def run_folds(jobs: list, cfg: dict, progress: bool, desc: str, where: Placement | None = None) -> dict[str, str]:
    """Run the folds where `where` places them (default: the run's placement, see placement.py);
    {fold: error} of those that failed twice.  Each
    fold writes its own file, so the order they end in is free.  A job is anything picklable with
    `.name` and `.run(jobs)`: a fine-tuning fold (FoldJob) or a regressor fold (cascade.regress.run)."""

    where = where or placement(cfg, len(jobs))
    bar = progress_bar(total=len(jobs), desc=f"{desc} folds", enabled=progress)
    errors = {}
    with contextlib.ExitStack() as stack:
        try:
            for job, err in _ended(stack, jobs, cfg, where):
                bar.update(1)
                if err:
                    errors[job.name] = err
        except BrokenProcessPool as exc:   # loky's TerminatedWorkerError is one too
            raise RuntimeError(f"{desc}: a fold worker process died ({exc}); killed from outside or "
                               "out of memory? Finished folds are kept: rerun to go on.") from exc
    bar.close()
    return errors


def run_fold_stage(jobs: list, cfg: dict, progress: bool, desc: str, log: Path,
                   where: Placement | None = None) -> None:
    """Run a stage's missing folds; if any failed twice, append their tracebacks to the stage's
    `log` and raise FoldsFailed naming them, after every other fold has finished and been kept."""
    errors = run_folds(jobs, cfg, progress, desc, where)
    if errors:
        for name, err in sorted(errors.items()):
            log_to(log)(f"fold {name} failed: {err}")
        raise FoldsFailed(f"{desc}: {len(errors)} fold(s) failed ({', '.join(sorted(errors)[:10])}); see {log}. "
                          "Finished folds are kept; rerun to retry the rest.")


def _ended(stack: contextlib.ExitStack, jobs: list, cfg: dict, where: Placement):
    """(job, error or None) pairs from the backend that runs the jobs as `where` places them.

    Every fold trains as one of `where.workers` slots (its threads: `where.threads`), even when
    fewer jobs are left: a resumed run whose last fold is alone must train it with the threads an
    uninterrupted run gave it, or its numbers differ (threads split reductions differently).  Only
    the pool is smaller."""
    from joblib import Parallel, delayed

    slots = where.workers
    n = min(slots, len(jobs))
    if cfg["backend"] == "dask":        # each dask worker trains on its own device (one worker per GPU)
        device = "cuda:0" if where.gpu else "cpu"
        return zip(jobs, _on_dask(stack, cfg, n, (delayed(_attempt)(j, slots, device) for j in jobs), where.gpu))
    if n <= 1:                          # here, on the run's first device
        return ((j, _attempt(j, slots)) for j in jobs)
    if where.gpu:
        if cfg["backend"] == "fork":
            raise ValueError("backend=fork cannot place folds on GPUs (CUDA does not survive a fork); "
                             "backend=auto spawns one pinned worker per fold slot")
        return stack.enter_context(_spawned(where, n, jobs))
    if local_backend(cfg, slots) == "fork":
        return stack.enter_context(_forked(n, slots, jobs))
    return zip(jobs, Parallel(n_jobs=n, backend="loky", return_as="generator")(delayed(_attempt)(j, slots) for j in jobs))


def _on_dask(stack: contextlib.ExitStack, cfg: dict, n: int, calls, gpu: bool):
    """joblib's dask backend on the cluster at `scheduler` (the same fold function as loky).  On
    GPUs every fold task asks for `resources={"GPU": 1}`: the scheduler runs it only on a worker
    that declared a GPU (`dask worker ... --resources GPU=1`), one fold per GPU at a time.  It
    waits up to `scheduler_wait` seconds for a first worker (joblib's default is 10 s, shorter
    than a batch queue)."""
    from joblib import Parallel, parallel_config
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError("backend=dask needs dask.distributed: pip install distributed") from exc
    if not cfg["scheduler"]:
        raise ValueError("backend=dask needs scheduler=tcp://HOST:PORT (the dask scheduler's address)")
    stack.enter_context(Client(cfg["scheduler"]))
    stack.enter_context(parallel_config(backend="dask", wait_for_workers_timeout=cfg["scheduler_wait"],
                                        **({"resources": {"GPU": 1}} if gpu else {})))
    return Parallel(n_jobs=n, return_as="generator")(calls)
