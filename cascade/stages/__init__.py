"""The stage graph: pretrained -> intermediate fine-tuning stages -> target protocol."""
