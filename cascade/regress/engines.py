"""Regression engines: one name -> one way to fit a fold's features and predict its test rows.

`autosklearn` (the thesis's engine: a searched ensemble of pre-processing + regressors) runs in
its own environment through a subprocess; `ridge`, `svr`, `gbr` and `rf` are plain scikit-learn
pipelines, always available for quick runs and tests.  An engine's spec (name, version, budget,
parameters) is hashed into the regression run's key and printed in every table row.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from cascade.regress.engine_env import EngineError


def _sklearn(name: str, params: dict, seed: int):
    """The scikit-learn engine `name` with its `regress.sklearn.<name>` hyper-parameters."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if name == "ridge":      # the regularisation chosen per fold by efficient leave-one-out
        lo, hi = np.log10(params["alpha_min"]), np.log10(params["alpha_max"])
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(lo, hi, params["n_alphas"])))
    if name == "svr":
        return make_pipeline(StandardScaler(), SVR(**params))
    if name == "gbr":
        return GradientBoostingRegressor(**params, random_state=seed)
    return RandomForestRegressor(**params, random_state=seed, n_jobs=1)


SKLEARN_ENGINES = ("ridge", "svr", "gbr", "rf")
ENGINES = ("autosklearn", *SKLEARN_ENGINES)


def spec(cfg: dict) -> dict:
    """What identifies an engine's results: name, version, budget, options."""
    r = cfg["regress"]
    if r["engine"] == "autosklearn":
        from cascade.regress import engine_env
        env = engine_env.python(cfg).parent.parent          # raises if the environment is missing
        v = engine_env.versions(cfg)
        return {"name": "autosklearn", "version": f"auto-sklearn {v['autosklearn']} (scikit-learn {v['scikit-learn']})",
                "budget": f"{r['time_left']} s per fold, {r['per_run_time']} s per model",
                "options": {"time_left": r["time_left"], "per_run_time": r["per_run_time"],
                            "memory_mb": r["memory_mb"], "metric": r["metric"]},
                "env": str(env)}
    import sklearn
    params = r["sklearn"][r["engine"]]
    return {"name": r["engine"], "version": f"scikit-learn {sklearn.__version__}", "budget": "–",
            "params": params, "options": repr(_sklearn(r["engine"], params, 0))}


def fit_predict(engine: dict, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, seed: int,
                work: Path, threads: int) -> tuple[np.ndarray, dict]:
    """Fit on (X, y), predict X_test; return the predictions and a description of the fitted
    model (for auto-sklearn: the ensemble's members with their weights and the leaderboard)."""
    if engine["name"] == "autosklearn":
        return _autosklearn(engine, X, y, X_test, seed, work, threads)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads):
        model = _sklearn(engine["name"], engine["params"], seed).fit(X, y)
        pred = model.predict(X_test)
    description = {"engine": engine["version"], "model": repr(model)}
    alpha = getattr(model[-1], "alpha_", None) if hasattr(model, "__getitem__") else None
    if alpha is not None:
        description["alpha"] = float(alpha)
    return np.asarray(pred, float), description


def _autosklearn(engine: dict, X, y, X_test, seed: int, work: Path, threads: int):
    """One fold in auto-sklearn's environment: arrays and JSON in, predictions and JSON out."""
    if work.exists():
        shutil.rmtree(work)            # a killed attempt's leftovers: start the fold afresh
    work.mkdir(parents=True)
    np.save(work / "X_train.npy", np.ascontiguousarray(X, dtype=np.float64))
    np.save(work / "y_train.npy", np.asarray(y, dtype=np.float64))
    np.save(work / "X_test.npy", np.ascontiguousarray(X_test, dtype=np.float64))
    opts = engine["options"]
    (work / "config.json").write_text(json.dumps({**opts, "seed": int(seed % 2**31), "dataset_name": work.name}))
    driver = Path(__file__).with_name("autosklearn_driver.py")
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    env.pop("PYTHONPATH", None)                      # nothing of the harness's environment leaks in
    timeout = opts["time_left"] * 2 + 300
    done = subprocess.run([str(Path(engine["env"]) / "bin" / "python"), str(driver), str(work)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode or not (work / "ensemble.json").exists():
        raise EngineError(f"auto-sklearn failed on {work.name} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    pred = np.load(work / "pred.npy")
    description = json.loads((work / "ensemble.json").read_text())
    shutil.rmtree(work)
    return pred, description

