"""The built-in components, registered through the same hooks as any plugin.

Only components: the CLI adds its own built-in commands itself (:mod:`vsekit.cli`).
"""

from __future__ import annotations

from vsekit.hookspecs import hookimpl


@hookimpl
def register_dataset_readers(register):
    from vsekit.data.readers import Flickr8kReader, PrecompReader

    register("precomp", PrecompReader)
    register("flickr8k", Flickr8kReader)


@hookimpl
def register_sentence_encoders(register):
    from vsekit.text.bow import BoWEncoder
    from vsekit.text.gru import GRUEncoder

    register("gru", GRUEncoder)
    register("bow", BoWEncoder)


@hookimpl
def register_image_feature_extractors(register):
    from vsekit.image.precomputed import PrecomputedFeatures

    register("precomputed", PrecomputedFeatures)


@hookimpl
def register_image_encoders(register):
    from vsekit.image.linear import LinearImageEncoder

    register("linear", LinearImageEncoder)


@hookimpl
def register_losses(register):
    from vsekit.losses import ContrastiveLoss, InfoNCELoss, MaxViolationLoss

    register("contrastive", ContrastiveLoss)
    register("max_violation", MaxViolationLoss)
    register("infonce", InfoNCELoss)


@hookimpl
def register_metrics(register):
    from vsekit.metrics import RecallMetric

    register("recall", RecallMetric)
