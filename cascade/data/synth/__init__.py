"""The embedded synthetic demo suite: a procedural face renderer (``faces``) and writers that lay
its images out in the exact on-disk formats of IMDB-WIKI, AgeDB, FG-NET, Adience and UTKFace
(``suite``), so the real loaders read it unchanged.  Everything made from it is labelled synthetic
(``cascade.data.records.SYNTHETIC_MARKER``)."""
from cascade.data.synth.render import STYLES, Identity, render_background, render_face, render_scene
from cascade.data.synth.suite import BASE_COUNTS, MIN_COUNTS, NOISE, scaled, suite_counts, write_suite

__all__ = ["Identity", "STYLES", "render_face", "render_scene", "render_background",
           "write_suite", "suite_counts", "scaled", "BASE_COUNTS", "MIN_COUNTS", "NOISE"]
