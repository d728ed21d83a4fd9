"""Image feature extractors (pixels or files -> feature rows) and image encoders (features -> joint space)."""

from vsekit.image.base import Extracted, ImageEncoder, ImageFeatureExtractor

__all__ = ["Extracted", "ImageEncoder", "ImageFeatureExtractor"]
