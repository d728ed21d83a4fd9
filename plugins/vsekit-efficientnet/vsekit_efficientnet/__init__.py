"""vsekit plugin: the ``efficientnet_lite0`` image feature extractor and the ``efficientnet_top`` image encoder.

Installed, it is picked up through the ``vsekit`` entry-point group; a spec
then names it where an image feature extractor is expected::

    [data.features]
    type = "efficientnet_lite0"
    ten_crop = false

and ``[model.image_encoder] type = "efficientnet_top"`` fine-tunes the network's last blocks on
features extracted with ``output = "trunk"``.

Heavy imports (torch, the model code) happen when the extractor is used,
not when vsekit loads the plugin.
"""

from __future__ import annotations

from vsekit import hookimpl

__version__ = "0.1.0"


@hookimpl
def register_image_feature_extractors(register):
    from vsekit_efficientnet.extractor import EfficientNetLite0

    register("efficientnet_lite0", EfficientNetLite0)


@hookimpl
def register_image_encoders(register):
    from vsekit_efficientnet.top import EfficientNetTop

    register("efficientnet_top", EfficientNetTop)
