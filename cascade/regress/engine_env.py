"""auto-sklearn's own virtual environment: built by one explicit, idempotent command.

Why not a dependency of the harness: auto-sklearn 0.15.0 (2022, its last release) pins
scikit-learn 0.24, which has no Python 3.11 wheel and cannot share an environment with the
harness's current scikit-learn / numpy 2.  It does build and run on Python 3.11 by itself
(the recipe below, verified in `autosklearn-constraints.txt`); the harness drives it through a
subprocess (`autosklearn_driver.py`) that exchanges only arrays and JSON.

`cascade regress --setup-engine autosklearn` builds it once under
`$CASCADE_HOME/engines/autosklearn-0.15.0` (`regress.engine_env=` elsewhere).  With a wheel
cache (`regress.find_links=DIR`, a setting: the package guesses no path) it takes about 20 s; without one, scikit-learn 0.24, ConfigSpace and pyrfr are
compiled (about 25 min on 2 cores; pyrfr needs `swig`).  Nothing is installed as a side effect of
a regression run: a missing environment is an error naming this command.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from cascade import config as C
from cascade.store import StageDir, atomic_write_json

AUTOSKLEARN = "0.15.0"
#: The runtime pins of the verified environment (numpy 1.23 / scipy 1.9 / pandas 1.5 / dask 2022).
RUNTIME = ["numpy==1.23.5", "scipy==1.9.3", "pandas==1.5.3", "dask<2023", "distributed<2023"]
READY = "READY.json"


class EngineError(RuntimeError):
    """The engine's environment could not be built, or its engine failed to run."""


def env_dir(cfg: dict) -> Path:
    given = cfg["regress"]["engine_env"]
    return Path(given).expanduser().resolve() if given else C.cascade_home(cfg) / "engines" / f"autosklearn-{AUTOSKLEARN}"


def find_links(cfg: dict) -> Path | None:
    """The wheel cache `regress.find_links` names (None: none given, compile)."""
    given = cfg["regress"]["find_links"]
    if not given:
        return None
    path = Path(given).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"regress.find_links={given}: folder does not exist")
    return path


def python(cfg: dict) -> Path:
    """The environment's interpreter; an error naming the set-up command when it is not built."""
    env = env_dir(cfg)
    if not (env / READY).exists():
        raise FileNotFoundError(f"auto-sklearn's environment {env} is not set up: run "
                                f"`cascade regress --setup-engine autosklearn` once (about 20 s with a wheel "
                                f"cache, regress.find_links=DIR; about 25 min compiling without), or use a "
                                f"scikit-learn engine (engine=ridge|svr|gbr|rf)")
    return env / "bin" / "python"


def _pip(py: Path, *args: str, quiet: bool) -> None:
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", *(["-q"] if quiet else []), *args]
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode:
        tail = (done.stderr or "")[-2000:] if quiet else ""
        raise EngineError(f"setting up auto-sklearn failed at: {' '.join(cmd)}\n{tail}")


def setup(cfg: dict, quiet: bool = False) -> Path:
    """Build the environment once (a second call returns at once); returns its folder."""
    env = env_dir(cfg)
    with StageDir(env.parent, env.name).lock():
        if (env / READY).exists():
            return env
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        py = env / "bin" / "python"
        constraints = resources.files("cascade.regress").joinpath("autosklearn-constraints.txt")
        links = find_links(cfg)
        with resources.as_file(constraints) as pins:
            if links:                                   # every compiled package is in the cache
                _pip(py, "--find-links", str(links), "-c", str(pins), "setuptools<60", "wheel",
                     f"auto-sklearn=={AUTOSKLEARN}", *RUNTIME, quiet=quiet)
            else:                                       # the verified recipe: compile scikit-learn 0.24
                if shutil.which("swig") is None:
                    raise FileNotFoundError("building auto-sklearn without a wheel cache compiles pyrfr, "
                                            "which needs `swig` (apt-get install swig); or pass "
                                            "regress.find_links=DIR with the prebuilt wheels")
                _pip(py, "setuptools<60", "wheel", "cython<3", "numpy==1.23.5", "scipy==1.9.3", quiet=quiet)
                _pip(py, "--no-build-isolation", "scikit-learn==0.24.2", quiet=quiet)
                _pip(py, "--no-build-isolation", f"auto-sklearn=={AUTOSKLEARN}", quiet=quiet)
                _pip(py, "--no-build-isolation", "-c", str(pins), *RUNTIME, quiet=quiet)
        check = subprocess.run([str(py), "-c", "import autosklearn, autosklearn.regression, sklearn; "
                                "print(autosklearn.__version__, sklearn.__version__)"],
                               capture_output=True, text=True)
        if check.returncode:
            raise EngineError(f"auto-sklearn does not import in {env}:\n{check.stderr[-2000:]}")
        versions = check.stdout.split()
        atomic_write_json(env / READY, {"autosklearn": versions[0], "scikit-learn": versions[1],
                                        "find_links": str(links) if links else None})
    return env


def versions(cfg: dict) -> dict:
    return json.loads((env_dir(cfg) / READY).read_text())
