"""What a run trains with: its data, device, seeds, model, loss, optimizer and batches, built before anything is
written, so that every user error surfaces while the run folder is untouched."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

import vsekit.training.distributed as distributed  # the module, not the package (no cycle)
from vsekit.data.batching import CaptionStore, bucketed_batches
from vsekit.data.overlap import overlap_warnings, split_overlap
from vsekit.data.readers import Split
from vsekit.data.tokenize import tokenize_all, tokenizer_problem
from vsekit.data.views import draw_views
from vsekit.data.vocab import Vocab, encode_all
from vsekit.errors import DataError, ProtocolError, SpecError
from vsekit.evaluate import protocol_captions
from vsekit.extract import RUNTIME_OPTIONS, recorded_extractor
from vsekit.metrics import check_folds
from vsekit.model import JointModel
from vsekit.spec import Spec
from vsekit.training.provenance import collect

log = logging.getLogger(__name__)


@attrs.define
class RunData:
    """The three splits a run reads: ``train`` (trained on), ``valid`` (model selection), ``test`` (evaluated)."""

    train: Split
    valid: Split
    test: Split
    #: images shared between the splits (:func:`vsekit.data.overlap.split_overlap`), for provenance.json
    overlap: dict[str, Any] = attrs.Factory(dict)


def load_data(spec: Spec) -> RunData:
    """Read the train, validation and evaluation splits (errors surface here, before anything is written).

    Raises:
        SpecError: an unknown split name, or ``[eval] folds`` that do not fit the evaluation split.
        DataError: a split whose image features differ in dimension from the train split's.
        ProtocolError: ``[eval] strict_protocol`` and an evaluated split with an image of fewer than 5 captions.

    Images shared between the splits are logged as warnings and recorded (:attr:`RunData.overlap`).
    """
    reader = spec.data.build()
    where = spec.source or "<spec>"
    for field, name in (("[train] valid_split", spec.train.valid_split), ("[eval] split", spec.eval.split)):
        if name not in reader.splits:
            raise SpecError(f"{where}: {field}: unknown split {name!r} — known: {', '.join(reader.splits)}")
    train = reader.read("train")
    valid = reader.read(spec.train.valid_split)
    test = valid if spec.eval.split == spec.train.valid_split else reader.read(spec.eval.split)
    for s in (valid, test):
        if s.dim_image != train.dim_image:
            raise DataError(f"{s.source}: {s.dim_image}-d image features, but the train split has {train.dim_image}-d")
    try:
        check_folds(spec.eval.folds, test.n_images)
    except ProtocolError as exc:
        why = str(exc).split(": ", 1)[-1]
        raise SpecError(f"{where}: [eval] folds: {spec.eval.folds} does not fit the {test.n_images} "
                        f"{spec.eval.split!r} images ({test.source}): {why}") from None
    if spec.eval.strict_protocol:  # refuse before training, not after it
        for s in (valid, test):
            protocol_captions(s, strict=True)
    overlap = split_overlap([train, valid, test])
    if distributed.from_env().is_main:  # every process reads the data; one says so
        for w in overlap_warnings(overlap):
            log.warning("%s", w)
    return RunData(train, valid, test, overlap)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's, numpy's and torch's global generators; return the run's own numpy generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(spec: Spec) -> torch.device:
    """``train.device`` as a torch device.

    Raises:
        SpecError: a device this machine lacks, or a ``precision`` it cannot run (not a crash later).
    """
    name = spec.train.device
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if name != "auto" and device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (device.index is not None and device.index >= n):
            have = f"{n} CUDA device(s)" if n else "no CUDA device"
            raise SpecError(f"{spec.source or '<spec>'}: [train] device: {name!r} requested, but this machine has "
                            f"{have}; use 'auto' or 'cpu'")
    elif name != "auto" and device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise SpecError(f"{spec.source or '<spec>'}: [train] device: {name!r} is not available on this machine; "
                            f"use 'auto' or 'cpu'")
    if spec.train.precision == "fp16" and device.type != "cuda":
        where = f"train.device is {name!r}" + ("" if name == device.type else f", {device.type} on this machine")
        raise SpecError(f"{spec.source or '<spec>'}: [train] precision: 'fp16' needs a CUDA device ({where}); "
                        f"use 'bf16' or 'fp32'")
    return device


#: the attribute a component sets on a parameter to train it at that multiple of the learning rate
LR_SCALE = "vsekit_lr_scale"


def init_words(model: JointModel, vocab: Vocab) -> None:
    """A new model's word embeddings from its sentence encoder's pretrained word vectors, when it takes them
    (``init_words(words)``, e.g. the GRU's ``word_vectors``, which logs how many words it found)."""
    init = getattr(model.sentence_encoder, "init_words", None)
    if init is not None:
        init(vocab.words)


def extractor_problems(spec: Spec, encoder: Any, extractor: dict[str, Any] | None) -> list[str]:
    """What the image encoder objects to in the extractor that made its features
    (:meth:`~vsekit.image.base.ImageEncoder.check_extractor`), one ``[model.image_encoder] TYPE: ...`` line each;
    none when the features record no extractor. ``run`` refuses them, ``validate`` reports them."""
    where = f"[model.image_encoder] {spec.model.image_encoder.type}: "
    return [where + p for p in encoder.check_extractor(extractor)] if extractor else []


def make_optimizer(params: list[torch.nn.Parameter], spec: Spec) -> torch.optim.Optimizer:
    """Adam as ``[train]`` says; the fused kernel (one pass over all tensors) where every parameter allows it.

    Parameters carrying the attribute ``vsekit_lr_scale`` (:data:`LR_SCALE`; e.g. a pretrained encoder's
    fine-tuned layers) form their own group, ``"lr_scale"`` in it; the loop sets each group's learning rate
    to the schedule's times its scale. The groups come in order of first appearance (unscaled first).
    """
    t = spec.train
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) and \
        len({p.device for p in params}) == 1
    by_scale: dict[float, list[torch.nn.Parameter]] = {1.0: []}
    for p in params:
        by_scale.setdefault(float(getattr(p, LR_SCALE, 1.0)), []).append(p)
    groups = [{"params": ps, "lr_scale": scale} for scale, ps in by_scale.items() if ps]
    return torch.optim.Adam(groups, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)


def autocast_for(spec: Spec, device: torch.device) -> torch.autocast | None:
    """The ``train.precision`` autocast context of the forward pass (None for fp32)."""
    p = spec.train.precision
    if p == "fp32":
        return None
    return torch.autocast(device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)


def spec_extractor(spec: Spec) -> dict[str, Any] | None:
    """The image feature extractor a reader runs itself (``[data.features]``, not ``precomputed``), or None."""
    features = getattr(spec.data.config, "features", None)
    if features is None or not hasattr(features, "to_dict") or features.type == "precomputed":
        return None
    return {k: v for k, v in features.to_dict().items() if k not in RUNTIME_OPTIONS}


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: bool,
                  d: distributed.Dist) -> list[np.ndarray]:
    """One epoch's global batches (int64 caption indices into ``lengths``); a multi-process run drops a last
    batch too small to give every rank a caption."""
    batches = bucketed_batches(lengths, batch_size, rng, bucket)
    if d.enabled:
        batches = [b for b in batches if len(b) >= d.world_size]
    return batches


@attrs.define
class Setup:
    """What a run trains with, built (and checked) by :meth:`build` before anything is written."""

    rng: np.random.Generator
    vocab: Vocab
    lengths: np.ndarray  # (n_captions,) int64 token counts of the train captions
    keep: np.ndarray  # indices of the captions at most maxlen_w long
    skipped: int
    prov: dict[str, Any]
    model: JointModel
    loss_fn: torch.nn.Module
    metric: Any
    store: CaptionStore
    needs_texts: bool
    images: torch.Tensor | MappedRows  # indexed by image ids: (B, dim_image) or (B, K, dim_image) float32, on device
    cap2img: torch.Tensor  # (n_captions,) int64
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: Any
    batches_per_epoch: int
    total_steps: int
    #: what every checkpoint of the run records beside the weights: the image feature extractor, when known
    record: dict[str, Any] = attrs.Factory(dict)
    #: (N, V, dim_image) views of the train images on device (data with ``train_views``), else None
    views: torch.Tensor | None = None

    @classmethod
    def build(cls, spec: Spec, data: RunData, device: torch.device, d: distributed.Dist) -> Setup:
        """Seed, build the vocabulary, model, loss and optimizer for ``spec`` on ``device``.

        Raises:
            SpecError: a global batch too small for the processes, or a tokenizer that cannot run.
            DataError: fewer than two training captions within ``[train] maxlen_w``.
        """
        t = spec.train
        if d.enabled and t.batch_size < 2 * d.world_size:
            raise SpecError(f"{spec.source or '<spec>'}: [train] batch_size: {t.batch_size} is the global batch of "
                            f"{d.world_size} processes; it must be at least {2 * d.world_size}")
        if t.threads:
            torch.set_num_threads(t.threads)
        rng = seed_everything(t.seed)
        tokenizer = spec.model.tokenizer
        if problem := tokenizer_problem(tokenizer):
            raise SpecError(f"{spec.source or '<spec>'}: [model] tokenizer: {problem}")
        tokens = tokenize_all(data.train.captions, tokenizer)  # the same calls as JointModel.token_ids
        vocab = Vocab.build(tokens, spec.vocab.min_count, spec.vocab.max_size)
        flat, lengths = encode_all(vocab, tokens, append_eos=spec.model.append_eos)
        keep = np.flatnonzero(lengths <= t.maxlen_w)
        if len(keep) < 2:
            raise DataError(f"{data.train.source}: {len(keep)} of {len(lengths)} training caption(s) are at most "
                            f"[train] maxlen_w = {t.maxlen_w} tokens long; nothing to train on")
        files = [f for s in (data.train, data.valid, data.test) for f in s.files]  # not train_views: other crops
        extractor = recorded_extractor(files) or spec_extractor(spec)  # of the same images, not the model's input
        model = JointModel.build(spec.model.sentence_encoder, spec.model.image_encoder, vocab, spec.model.dim,
                                 data.train.dim_image, append_eos=spec.model.append_eos,
                                 tokenizer=tokenizer, source=spec.source)
        if problems := extractor_problems(spec, model.image_encoder, extractor):
            raise DataError("; ".join(problems))
        init_words(model, vocab)
        model = model.to(device)
        loss_fn = spec.loss.build().to(device)
        params = list(model.parameters()) + list(loss_fn.parameters())
        batches_per_epoch = len(epoch_batches(lengths[keep], t.batch_size, np.random.default_rng(0), t.bucket, d))
        return cls(rng=rng, vocab=vocab, lengths=lengths, keep=keep, skipped=int(len(lengths) - len(keep)),
                   prov={**collect(files + data.train.view_files, spec.source), "split_overlap": data.overlap},
                   model=model,
                   loss_fn=loss_fn, metric=spec.eval.metric.build(),
                   store=CaptionStore(flat, lengths, tokens),
                   needs_texts=getattr(model.sentence_encoder, "needs_texts", False),
                   images=train_rows(data.train, model, device, spec.source),
                   views=None if data.train.views is None else torch.from_numpy(data.train.views).to(device),
                   cap2img=torch.from_numpy(data.train.cap2img), params=params,
                   optimizer=make_optimizer(params, spec),
                   scaler=torch.amp.GradScaler("cuda") if t.precision == "fp16" else None,
                   batches_per_epoch=batches_per_epoch, total_steps=batches_per_epoch * t.max_epochs,
                   record={"image_feature_extractor": extractor} if extractor else {})


class MappedRows:
    """Region features (N, K, dim_image) left where they are (a read-only ``np.memmap``, dtype as stored):
    ``rows[ids]`` reads the rows ``ids`` (B,) int64 (any device) and returns them as a float32 tensor
    (B, K, dim_image) on ``device``; only a batch is ever in memory."""

    def __init__(self, array: np.ndarray, device: torch.device) -> None:
        self.array = array
        self.device = device

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        rows = np.asarray(self.array[ids.cpu().numpy()], dtype=np.float32)  # fancy indexing: a copy of B rows
        return torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)


def epoch_views(setup: Setup, seed: int, epoch: int) -> None:
    """With per-view train features: make ``setup.images`` the views drawn for ``epoch`` (0-based), one per image
    (:func:`vsekit.data.views.draw_views`: the same for the same seed and epoch, resumed or not)."""
    if setup.views is None:
        return
    n, v = setup.views.shape[:2]
    pick = torch.from_numpy(draw_views(n, v, seed, epoch)).to(setup.views.device)
    setup.images = setup.views[torch.arange(n, device=setup.views.device), pick]


def train_rows(train: Split, model: JointModel, device: torch.device, source: str | None) -> torch.Tensor | MappedRows:
    """The train images as batches index them: (N, dim_image) rows copied once to ``device``, or
    (N, K, dim_image) region features gathered a batch at a time (:class:`MappedRows`).

    Raises:
        SpecError: region features with an image encoder that takes one row per image.
    """
    if train.images.ndim == 2:
        return torch.from_numpy(train.images).to(device)  # copied once: batches index it there
    if not getattr(model.image_encoder, "takes_regions", False):
        raise SpecError(f"{source or '<spec>'}: [model.image_encoder] type: {train.source} holds region features "
                        f"{tuple(train.images.shape)}; this image encoder takes one row per image: use a pooling "
                        f"encoder (type = \"mean\" or \"gpo\")")
    return MappedRows(train.images, device)


@attrs.define
class RunContext:
    """What every part of one run shares: the spec (and its dict as written to ``spec.toml``), the run folder,
    the data, the built :class:`Setup`, the device, this process's place in the job, and ``quiet``."""

    spec: Spec
    out: Path
    spec_dict: dict[str, Any]
    data: RunData
    setup: Setup
    device: torch.device
    d: distributed.Dist
    quiet: bool
