"""cascade: a benchmark harness for cascaded fine-tuning of face-recognition CNNs for age estimation.

The Python API (cascade/api.py, docs/api.md): `cascade.plan`, `cascade.run`, `cascade.predict`,
`cascade.load_results` and their `cascade.Results`.
"""

__version__ = "0.1.0"
__all__ = ["plan", "run", "predict", "load_results", "Results"]


def __getattr__(name: str):
    """The API, imported on first use: `import cascade.config` (in every fold worker, say) stays
    as light as it was.  `cascade.predict` is the subpackage, callable as the API's predict."""
    import importlib

    if name == "predict":
        return importlib.import_module("cascade.predict")
    if name in __all__:
        return getattr(importlib.import_module("cascade.api"), name)
    raise AttributeError(f"module 'cascade' has no attribute {name!r}")
