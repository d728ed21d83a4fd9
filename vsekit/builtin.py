"""The built-in components, registered through the same hooks as any plugin.

Only components: the CLI adds its own built-in commands itself (:mod:`vsekit.cli`).
"""

from __future__ import annotations

from vsekit.hookspecs import hookimpl


@hookimpl
def register_dataset_readers(register):
    """Register the built-in dataset readers ``precomp``, ``flickr8k``, ``csv``, ``karpathy`` and ``coco``."""
    from vsekit.data.coco import CocoReader
    from vsekit.data.csv_captions import CsvReader, Flickr8kReader
    from vsekit.data.karpathy import KarpathyReader
    from vsekit.data.readers import PrecompReader

    register("precomp", PrecompReader)
    register("flickr8k", Flickr8kReader)
    register("csv", CsvReader)
    register("karpathy", KarpathyReader)
    register("coco", CocoReader)


@hookimpl
def register_sentence_encoders(register):
    """Register the built-in sentence encoders ``gru`` and ``bow``."""
    from vsekit.text.bow import BoWEncoder
    from vsekit.text.gru import GRUEncoder

    register("gru", GRUEncoder)
    register("bow", BoWEncoder)


@hookimpl
def register_image_feature_extractors(register):
    """Register the built-in image feature extractor ``precomputed``."""
    from vsekit.image.precomputed import PrecomputedFeatures

    register("precomputed", PrecomputedFeatures)


@hookimpl
def register_image_encoders(register):
    """Register the built-in image encoders ``linear``, ``mlp`` (linear plus a residual MLP), and ``mean`` and
    ``gpo`` (pooled region features)."""
    from vsekit.image.linear import LinearImageEncoder, MLPImageEncoder
    from vsekit.image.pooled import GPOImageEncoder, MeanImageEncoder

    register("linear", LinearImageEncoder)
    register("mlp", MLPImageEncoder)
    register("mean", MeanImageEncoder)
    register("gpo", GPOImageEncoder)


@hookimpl
def register_losses(register):
    """Register the built-in losses ``contrastive``, ``max_violation`` and ``infonce``."""
    from vsekit.losses import ContrastiveLoss, InfoNCELoss, MaxViolationLoss

    register("contrastive", ContrastiveLoss)
    register("max_violation", MaxViolationLoss)
    register("infonce", InfoNCELoss)


@hookimpl
def register_metrics(register):
    """Register the built-in metric ``recall``."""
    from vsekit.metrics import RecallMetric

    register("recall", RecallMetric)
