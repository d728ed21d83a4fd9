"""Sentence encoders: captions (token indices) -> vectors in the joint space."""

from vsekit.text.base import SentenceEncoder

__all__ = ["SentenceEncoder"]
