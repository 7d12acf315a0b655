"""`cascade predict`: a trained stage applied to new photographs (faces found, cut out as the
stage's training images were, ages with intervals written per face).

The package is also the Python API's `cascade.predict(stage, paths, ...)` (cascade.api.predict):
the import system binds `cascade.predict` to this package whenever any of its modules is
imported, so the name can only be the API's function if the package itself can be called.
"""
import sys
import types


class _Callable(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """cascade.api.predict (its signature and docstring: docs/api.md)."""
        from cascade.api import predict

        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable
