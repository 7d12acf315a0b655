"""Fit auto-sklearn on one fold.  Runs INSIDE auto-sklearn's own environment (Python 3.11 with
scikit-learn 0.24 / numpy 1.23), never in the harness's: it imports nothing from `cascade`.

Why a separate process and environment: auto-sklearn 0.15.0 (its last release) pins
scikit-learn 0.24, which cannot live beside the harness's current scikit-learn / numpy 2.  The two
sides exchange only arrays (.npy) and JSON through a work folder:

    WORK/X_train.npy  WORK/y_train.npy  WORK/X_test.npy  WORK/config.json   (written by the harness)
    WORK/pred.npy     WORK/ensemble.json                                     (written here)

Usage: python autosklearn_driver.py WORK
"""
import json
import os
import sys
import time


def describe(pipeline) -> dict:
    """A member of the ensemble: its class and its configuration (the searched choices of
    pre-processing, regressor and their hyper-parameters)."""
    config = getattr(pipeline, "config", None)
    if hasattr(config, "get_dictionary"):
        config = {k: (v.item() if hasattr(v, "item") else v) for k, v in config.get_dictionary().items()}
    return {"class": type(pipeline).__name__, "config": config if isinstance(config, dict) else str(config)}


def main(work: str) -> None:
    import numpy as np
    import autosklearn
    import autosklearn.metrics
    from autosklearn.regression import AutoSklearnRegressor

    cfg = json.load(open(os.path.join(work, "config.json")))
    X = np.load(os.path.join(work, "X_train.npy"))
    y = np.load(os.path.join(work, "y_train.npy"))
    X_test = np.load(os.path.join(work, "X_test.npy"))
    start = time.time()
    model = AutoSklearnRegressor(
        time_left_for_this_task=cfg["time_left"], per_run_time_limit=cfg["per_run_time"],
        memory_limit=cfg["memory_mb"], seed=cfg["seed"], n_jobs=1,
        metric=getattr(autosklearn.metrics, cfg["metric"]),
        tmp_folder=os.path.join(work, "autosklearn_tmp"), delete_tmp_folder_after_terminate=True)
    model.fit(X, y, dataset_name=cfg["dataset_name"])
    pred = model.predict(X_test)
    board = model.leaderboard(detailed=False).reset_index()
    ensemble = {
        "engine": f"auto-sklearn {autosklearn.__version__}",
        "models": [{"weight": float(w), **describe(p)} for w, p in model.get_models_with_weights()],
        "leaderboard": json.loads(board.to_json(orient="records")),
        "statistics": model.sprint_statistics(),
        "fit_seconds": time.time() - start,
    }
    np.save(os.path.join(work, "pred.npy"), np.asarray(pred, dtype=np.float64))
    with open(os.path.join(work, "ensemble.json.tmp"), "w") as fh:
        json.dump(ensemble, fh, indent=1, default=str)
    os.replace(os.path.join(work, "ensemble.json.tmp"), os.path.join(work, "ensemble.json"))


if __name__ == "__main__":
    main(sys.argv[1])
