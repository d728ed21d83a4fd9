"""Deprecated: the rank maths moved to :mod:`vsekit.metrics` (``vsekit.metrics.ranking``, ``.summary``, ...)."""

import warnings

from vsekit.metrics import (
    DEFAULT_KS,
    MIN_FOLD_IMAGES,
    TIE_RULES,
    TINY_SPLIT_IMAGES,
    ArrayLike,
    chance_rsum,
    check_folds,
    check_ties,
    input_warnings,
    ranks_both,
    ranks_i2t,
    ranks_t2i,
    recall,
    recall_summary,
)

warnings.warn("vsekit.metrics_core is deprecated; use vsekit.metrics", DeprecationWarning, stacklevel=2)

__all__ = [
    "DEFAULT_KS",
    "MIN_FOLD_IMAGES",
    "TIE_RULES",
    "TINY_SPLIT_IMAGES",
    "ArrayLike",
    "chance_rsum",
    "check_folds",
    "check_ties",
    "input_warnings",
    "ranks_both",
    "ranks_i2t",
    "ranks_t2i",
    "recall",
    "recall_summary",
]
