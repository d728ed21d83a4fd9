"""vsekit: visual-semantic embeddings (Kiros et al. 2014 and its family: VSE, VSE++, InfoNCE).

The public Python API::

    import vsekit
    results = vsekit.train("examples/quickstart.toml")
    model = vsekit.load_model(results["run_dir"])
    caps = vsekit.encode_sentences(model, ["a dog runs on the beach"])
    ims = vsekit.encode_images(model, features)
    vsekit.evalrank(model, data="examples/quickstart.toml", split="test")
"""

from __future__ import annotations

from vsekit._version import __version__  # noqa: E402

from vsekit.api import eval_checkpoint, evalrank, load_model, load_spec, train  # noqa: E402
from vsekit.data.readers import DatasetReader, Split  # noqa: E402
from vsekit.errors import DataError, SpecError, VsekitError  # noqa: E402
from vsekit.evaluate import format_table  # noqa: E402
from vsekit.hookspecs import hookimpl  # noqa: E402
from vsekit.image.base import ImageEncoder, ImageFeatureExtractor  # noqa: E402
from vsekit.losses import Loss  # noqa: E402
from vsekit.metrics import Metric  # noqa: E402
from vsekit.model import JointModel, encode_images, encode_sentences  # noqa: E402
from vsekit.registry import register  # noqa: E402
from vsekit.retrieval import CaptionBank, ImageBank, Retriever, arithmetic, build_caption_bank, build_image_bank, load_bank, retrieve  # noqa: E402,E501
from vsekit.text.base import SentenceEncoder  # noqa: E402

__all__ = [
    "DataError", "DatasetReader", "ImageEncoder", "ImageFeatureExtractor", "JointModel", "Loss", "Metric",
    "SentenceEncoder", "SpecError", "Split", "VsekitError", "__version__", "encode_images", "encode_sentences",
    "eval_checkpoint", "evalrank", "format_table", "hookimpl", "load_model", "load_spec", "register", "train",
    "CaptionBank", "ImageBank", "Retriever", "arithmetic", "build_caption_bank", "build_image_bank", "load_bank",
    "retrieve",
]
