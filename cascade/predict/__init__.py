"""`cascade predict`: a trained stage applied to new photographs (faces found, cut out as the
stage's training images were, ages with intervals written per face)."""
