"""Retrieval metrics: the metric component kind and the rank maths it uses.

* :mod:`vsekit.metrics.inputs`: conversion and validation of embeddings and the caption -> image map;
* :mod:`vsekit.metrics.ranking`: 0-based ranks of both directions, the one implementation (tie rules);
* :mod:`vsekit.metrics.summary`: R@K (%) / 1-based median and mean rank / rsum, folds, :func:`recall`;
* :mod:`vsekit.metrics.chance`: the rsum of random scores;
* :mod:`vsekit.metrics.protocol`: the captions an evaluation ranks (each image's first 5);
* :mod:`vsekit.metrics.checks`: warnings about inputs that make a table meaningless;
* :mod:`vsekit.metrics.base`: :class:`Metric` (the component base) and :class:`RecallMetric`.
"""

from vsekit.metrics.base import Metric, RecallMetric
from vsekit.metrics.chance import chance_rsum
from vsekit.metrics.checks import TINY_SPLIT_IMAGES, input_warnings
from vsekit.metrics.inputs import ArrayLike
from vsekit.metrics.protocol import EVAL_CAPS_PER_IMAGE, EvalCaptions, eval_captions
from vsekit.metrics.ranking import TIE_RULES, check_ties, ranks_both, ranks_i2t, ranks_t2i
from vsekit.metrics.summary import DEFAULT_KS, MIN_FOLD_IMAGES, check_folds, recall, recall_summary

__all__ = [
    "DEFAULT_KS",
    "EVAL_CAPS_PER_IMAGE",
    "MIN_FOLD_IMAGES",
    "TIE_RULES",
    "TINY_SPLIT_IMAGES",
    "ArrayLike",
    "EvalCaptions",
    "Metric",
    "RecallMetric",
    "chance_rsum",
    "check_folds",
    "check_ties",
    "eval_captions",
    "input_warnings",
    "ranks_both",
    "ranks_i2t",
    "ranks_t2i",
    "recall",
    "recall_summary",
]
