"""Where folds run (cascade.stages.workers): forked workers only where they are safe, the same
numbers as loky, a dead worker reported clearly, and no worker outliving a killed run."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from cascade import config as C
from cascade.cli import main
from cascade.stages import plan as P
from cascade.stages import workers as W

from conftest import FAST

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork workers are Linux-only")


def _cfg(*extra):
    return C.load([*FAST, *extra])


def test_auto_forks_only_with_one_torch_thread_per_fold_and_no_cuda(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert W.local_backend(_cfg("jobs=8"), 8) == "fork"             # 8 cores / 8 folds: 1 thread each
    assert W.local_backend(_cfg("jobs=2"), 2) == "loky"             # 4 threads each: OpenMP would hang
    assert W.local_backend(_cfg("jobs=2", "train.threads=1"), 2) == "fork"
    assert W.local_backend(_cfg("jobs=2", "backend=loky", "train.threads=1"), 2) == "loky"
    with pytest.raises(ValueError, match="one torch thread per fold"):
        W.local_backend(_cfg("jobs=2", "backend=fork"), 2)
    monkeypatch.setattr(W.torch.cuda, "is_initialized", lambda: True)
    assert W.local_backend(_cfg("jobs=8"), 8) == "loky"             # a forked CUDA context is unusable


class Job:
    """A stand-in fold: records which process ran it, or fails / dies on request."""

    def __init__(self, name: str, folder: str, action: str = "ok"):
        self.name, self.folder, self.action = name, folder, action

    def run(self, jobs: int) -> None:
        Path(self.folder, self.name).write_text(f"{os.getpid()} {os.getppid()}")
        if self.action == "fail":
            raise ValueError("injected")
        if self.action == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.action == "sleep":
            time.sleep(120)


@pytest.mark.parametrize("backend", ["fork", "loky"])
def test_folds_run_in_worker_processes_and_failures_are_collected(tmp_path, backend):
    cfg = _cfg("jobs=2", "train.threads=1", f"backend={backend}")
    jobs = [Job(str(i), str(tmp_path), "fail" if i == 3 else "ok") for i in range(6)]
    errors = W.run_folds(jobs, cfg, progress=False, desc="t")
    assert list(errors) == ["3"] and "injected" in errors["3"]
    pids = {int(p.read_text().split()[0]) for p in tmp_path.iterdir()}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2
    if backend == "fork":                        # children of this process, not of a loky manager
        assert {int(p.read_text().split()[1]) for p in tmp_path.iterdir()} == {os.getpid()}


@pytest.mark.parametrize("backend", ["fork", "loky"])
def test_a_worker_killed_from_outside_is_a_clear_error(tmp_path, backend):
    cfg = _cfg("jobs=2", "train.threads=1", f"backend={backend}")
    jobs = [Job("0", str(tmp_path)), Job("1", str(tmp_path), "die"), Job("2", str(tmp_path))]
    with pytest.raises(RuntimeError, match="(?s)a fold worker process died.*rerun"):
        W.run_folds(jobs, cfg, progress=False, desc="t")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")              # a zombie nobody reaped has ended too


def test_forked_workers_die_with_a_killed_parent(tmp_path):
    """A SIGKILLed run must not leave workers behind: they would hold the stage lock they
    inherited, and the rerun would wait on it for ever."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}]
        from test_workers import Job, _cfg
        from cascade.stages import workers as W
        W.run_folds([Job(str(i), {str(tmp_path)!r}, "sleep") for i in range(2)],
                    _cfg("jobs=2", "train.threads=1", "backend=fork"), progress=False, desc="t")
    """)
    parent = subprocess.Popen([sys.executable, "-c", script])
    end = time.time() + 60
    while time.time() < end and len(list(tmp_path.iterdir())) < 2:
        time.sleep(0.05)
    workers = [int(p.read_text().split()[0]) for p in tmp_path.iterdir()]
    assert len(workers) == 2 and all(_alive(w) for w in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    end = time.time() + 10
    while time.time() < end and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)


def test_forked_and_loky_folds_give_the_same_predictions(home, tmp_path):
    """Where a fold runs never changes its numbers: the same LOPO predictions from forked
    workers and from fresh loky interpreters."""
    extra = ["stage=", "target=fgnet", "stages.fgnet.protocol=lopo", "data.max_images=40", "jobs=2",
             "train.threads=1", "train.mode=full"]
    other = tmp_path / "loky"
    other.mkdir()
    (other / "demo").symlink_to((home / "demo").resolve())
    key = P.build(C.load([*FAST, f"home={home}", *extra])).targets[0].key
    for h, backend in ((home, "fork"), (other, "loky")):
        assert main(["protocol", "lopo", *FAST, f"home={h}", f"run.results_dir={h}/results", "--quiet",
                     *extra, "--backend", backend]) == 0
    forked, loky = (pd.read_csv(h / "stages" / key / "predictions.csv") for h in (home, other))
    pd.testing.assert_frame_equal(forked, loky)
