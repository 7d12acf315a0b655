"""cascade: a benchmark harness for cascaded fine-tuning of face-recognition CNNs for age estimation."""

__version__ = "0.1.0"
