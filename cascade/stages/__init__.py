"""The stage graph: pretrained -> intermediate fine-tuning stages -> target protocol."""


class FoldsFailed(RuntimeError):
    """Some folds of a protocol failed twice; the others finished and are kept for the next run."""
