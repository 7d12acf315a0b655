"""Training: augmentation, the epoch loop with exact resume, and prediction."""
