"""Backbones (a registry of constructors), weight sources, and the age-classification model."""
from cascade.models.backbones import BACKBONES, build_backbone
from cascade.models.age_model import AgeModel

__all__ = ["BACKBONES", "build_backbone", "AgeModel"]
