"""The joint model (a sentence encoder and an image encoder meeting in one unit-norm space), and
:func:`encode_sentences` / :func:`encode_images`, which turn captions and feature rows into its embeddings.

The model's own methods are the short way (sentence-transformers / open_clip style)::

    model = vsekit.load_model("f8k")
    caps = model.encode_sentences(["a dog runs", "two men play chess"])   # (2, dim) float32, unit rows
    ims = model.encode_images(["photo.jpg", pil_image])                    # files, PIL images or (N, D) features
    model.similarity(caps, ims)                                            # (2, 2) cosine
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vsekit.data.batching import collate
from vsekit.data.tokenize import DEFAULT, get_tokenizer, tokenize_all
from vsekit.data.vocab import Vocab, encode_all
from vsekit.errors import DataError
from vsekit.image_features import IMAGE_BYTES, build_extractor, check_images, extractor_table, image_rows, is_pil_image
from vsekit.io import nonfinite_rows
from vsekit.spec import Component
from vsekit.text.batch import TextBatch

__all__ = ["JointModel", "encode_images", "encode_sentences", "parameter_count", "token_budget_batches"]


def _normalize(x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """``F.normalize(x, dim=-1)``; without autograd, in place when ``x`` is a tensor of its own (it shares memory
    with none of ``inputs``), which saves a pass and an allocation at encode time. Same values either way."""
    if torch.is_grad_enabled() or x.requires_grad or x.dtype not in (torch.float32, torch.float64):
        return F.normalize(x, dim=-1)
    ptr = x.untyped_storage().data_ptr()
    if any(t.untyped_storage().data_ptr() == ptr for t in inputs):
        return F.normalize(x, dim=-1)
    return x.div_(torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-12))


def parameter_count(sentence: Component, image: Component, n_words: int, dim: int, dim_image: int) -> int | None:
    """How many parameters :meth:`JointModel.build` would make, counted on torch's meta device (nothing is
    allocated); :data:`vsekit.limits.UNCOUNTABLE` when a size overflows torch's 64-bit sizes; None when a
    component cannot be built there (its own build reports its problems)."""
    from vsekit.limits import UNCOUNTABLE

    try:
        with torch.device("meta"):
            parts = (sentence.build(n_words, dim), image.build(dim_image, dim))
    except Exception as exc:  # a plugin's component may not support the meta device: no estimate
        return UNCOUNTABLE if "overflow" in str(exc).lower() else None
    return sum(p.numel() for m in parts for p in m.parameters())


class JointModel(nn.Module):
    """Encodes captions and image features into the same ``dim``-d space.

    ``append_eos`` feeds one ``<eos>`` step after each caption (the
    reference's encoder did; native vsekit models do not). ``n_words`` maps
    word indices >= n_words to ``<unk>`` (the reference's vocabulary cutoff).
    ``tokenizer`` names the entry of :data:`vsekit.data.tokenize.TOKENIZERS`
    that turns text into tokens on every path (:meth:`tokens`); an unknown
    name raises :class:`~vsekit.errors.SpecError`.

    Attributes it carries beyond its modules (set by whoever loads or builds it, through :meth:`set_origin`):

    * ``spec``: the spec (a plain dict, as in the checkpoint's record) the model was trained or imported
      from, or None; ``vsekit.evalrank`` reads its data from it when given none.
    * ``weights_sha256``: the sha256 (hex) of the weights file it was loaded from, or None; retrieval banks
      record it to tell which weights made them.
    * ``reference_options``: for a model imported from the reference's ``.npz``, the options its ``.pkl``
      held (a dict), else None.
    * ``spec_base``: the folder relative paths of ``spec`` resolve from (a checkpoint's folder), or None (the
      current directory).
    * ``image_feature_extractor``: the table (``{"type": NAME, ...}``) of the image feature extractor that made
      the training features, when the checkpoint records one; :meth:`encode_images` uses it for image files.
    * ``trust_code``: whether the model was loaded with ``trust_code=True`` (:func:`vsekit.load_model`): only
      then may the extractor table it records import code it names.
    """

    spec: dict[str, Any] | None
    weights_sha256: str | None
    reference_options: dict[str, Any] | None
    spec_base: Path | None
    image_feature_extractor: dict[str, Any] | None
    trust_code: bool

    def __init__(self, sentence_encoder: nn.Module, image_encoder: nn.Module, vocab: Vocab,
                 *, append_eos: bool = False, n_words: int | None = None, tokenizer: str = DEFAULT) -> None:
        super().__init__()
        self.sentence_encoder = sentence_encoder
        self.image_encoder = image_encoder
        self.vocab = vocab
        self.append_eos = append_eos
        self.n_words = n_words
        get_tokenizer(tokenizer)  # refuse an unknown name now, not at the first caption
        self.tokenizer = tokenizer
        self.spec = None
        self.weights_sha256 = None
        self.reference_options = None
        self.spec_base = None
        self.image_feature_extractor = None
        self.trust_code = False
        object.__setattr__(self, "_extractors", {})  # built extractors by name; never a submodule (state_dict)

    def set_origin(self, *, spec: dict[str, Any] | None = None, weights_sha256: str | None = None,
                   reference_options: dict[str, Any] | None = None, spec_base: str | Path | None = None,
                   image_feature_extractor: dict[str, Any] | None = None,
                   trust_code: bool | None = None) -> JointModel:
        """Record where the model comes from (see the class docstring): its ``spec`` and the folder its relative
        paths resolve from (``spec_base``), the ``weights_sha256`` of its weights file, the ``reference_options``
        of an imported model, the ``image_feature_extractor`` table its checkpoint records, whether it was loaded
        with ``trust_code``; an argument left None keeps the current value. Returns the model."""
        for name, value in (("spec", spec), ("weights_sha256", weights_sha256),
                            ("reference_options", reference_options), ("image_feature_extractor",
                                                                       image_feature_extractor),
                            ("trust_code", trust_code)):
            if value is not None:
                setattr(self, name, value)
        if spec_base is not None:
            self.spec_base = Path(spec_base)
        return self

    @classmethod
    def build(cls, sentence: Component, image: Component, vocab: Vocab, dim: int, dim_image: int,
              **kwargs: Any) -> JointModel:
        """A new model: the sentence encoder for ``len(vocab)`` words, the image encoder ``dim_image`` -> ``dim``.

        ``kwargs`` go to the constructor, less ``source`` (a file or spec), which names the model in the error.

        Raises:
            SpecError: its parameters would not fit in half of this machine's memory
                (:func:`vsekit.limits.check_parameter_count`), checked before anything is allocated.
        """
        from vsekit.limits import check_parameter_count

        where = kwargs.pop("source", None)
        if (n_params := parameter_count(sentence, image, len(vocab), dim, dim_image)) is not None:
            check_parameter_count(n_params, where)  # before anything is allocated
        return cls(sentence.build(len(vocab), dim), image.build(dim_image, dim), vocab, **kwargs)

    @property
    def dim(self) -> int:
        """The width of the joint embedding space."""
        return self.sentence_encoder.dim

    @property
    def dim_image(self) -> int:
        """The width of the image features the model takes."""
        return self.image_encoder.dim_image

    def tokens(self, texts: Sequence[str | Sequence[str]]) -> list[list[str]]:
        """The model's tokens of each text (token lists are joined with spaces and tokenized again)."""
        return tokenize_all(texts, self.tokenizer)

    def token_ids(self, texts: Sequence[str | Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The word ids of ``texts`` as the model reads them: one flat int64 array and (N,) int64 lengths
        (``<eos>`` appended when ``append_eos``; ids >= ``n_words`` mapped to ``<unk>``)."""
        return encode_all(self.vocab, self.tokens(texts), append_eos=self.append_eos, n_words=self.n_words)

    def encode_text(self, batch: TextBatch) -> torch.Tensor:
        """L2-normalized caption embeddings (B, dim) float of a :class:`TextBatch`."""
        return F.normalize(self.sentence_encoder.encode(batch), dim=-1)

    def encode_image(self, features: torch.Tensor, training: bool = False) -> torch.Tensor:
        """Image embeddings (B, dim) float of features (B, dim_image) float.

        L2-normalized, except with ``training=True`` when the encoder's ``normalize_train`` is false.
        """
        out = self.image_encoder(features)
        if training and not getattr(self.image_encoder, "normalize_train", True):
            return out
        return _normalize(out, features, *self.image_encoder.parameters(), *self.image_encoder.buffers())

    def forward(self, batch: TextBatch, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-graph embeddings: (images, captions)."""
        return self.encode_image(features, training=True), self.encode_text(batch)

    # -- the short API: lists in, numpy out ----------------------------------------------------------------------

    def encode_sentences(self, sentences: Sequence[str], batch_size: int = 512,
                         verbose: bool = False) -> np.ndarray:
        """Unit-norm float32 embeddings (N, dim) of N captions, row i for caption i: exactly
        :func:`vsekit.encode_sentences` (the same caption gives the same row on every path).

        Raises :class:`~vsekit.errors.DataError` when given one string instead of a list.
        """
        return encode_sentences(self, sentences, batch_size, verbose)

    def encode_images(self, images: Any, batch_size: int = 2048, verbose: bool = False, *,
                      extractor: str | None = None) -> np.ndarray:
        """Unit-norm float32 embeddings (N, dim) of N images, row i for image i.

        ``images``: a list of image files (``str`` / ``Path``), their bytes and ``PIL.Image.Image`` objects,
        featurized by the image feature extractor the model records (or ``extractor``, a registered name; built
        once per model, EXIF orientation applied); or feature rows, an (N, dim_image) / (N, K, dim_image) array
        or tensor, as :func:`vsekit.encode_images` takes.

        Raises:
            DataError: one path or image instead of a list, an item that is neither, an unreadable image, or
                features of the wrong shape.
            VsekitError: image files for a model that records no extractor and no ``extractor`` given.
        """
        if torch.is_tensor(images) or isinstance(images, np.ndarray):
            return encode_images(self, images, batch_size, verbose)
        if isinstance(images, (str, Path, *IMAGE_BYTES)) or is_pil_image(images):
            raise DataError(f"encode_images: expected a list of images, got one {type(images).__name__}; "
                            f"pass [image]")
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not any(isinstance(x, (str, Path, *IMAGE_BYTES)) or is_pil_image(x) for x in images):  # lists of numbers
            return encode_images(self, np.asarray(images, dtype=np.float32), batch_size, verbose)
        check_images(images)  # before building the extractor
        return encode_images(self, image_rows(self.image_extractor(extractor), images, self.dim_image),
                             batch_size, verbose)

    def image_extractor(self, name: str | None = None) -> Any:
        """The image feature extractor for image files: ``name``, else the one the model records (see
        :func:`vsekit.image_features.extractor_table`); built on first use and kept.

        Raises :class:`~vsekit.errors.VsekitError` when the model records none and no ``name`` is given, or the
        extractor is not installed; :class:`~vsekit.errors.UntrustedCodeError` when the recorded table names code
        to import and the model was not loaded with ``trust_code=True``.
        """
        cache = self.__dict__["_extractors"]
        if name not in cache:
            meta = {"image_feature_extractor": self.image_feature_extractor, "spec": self.spec}
            table = extractor_table(meta, self.dim_image, name)
            cache[name] = build_extractor(table, trust_code=self.trust_code or name is not None)
        return cache[name]

    @staticmethod
    def similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray:
        """Cosine similarities (len(a), len(b)) float32 of embedding rows ``a`` (N, dim) and ``b`` (M, dim)
        (rows are normalized first; a zero row scores 0).

        Raises :class:`~vsekit.errors.DataError` when either is not 2-D or their widths differ.
        """
        ta, tb = (torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else
                  x.detach().float().cpu() for x in (a, b))
        if ta.ndim != 2 or tb.ndim != 2 or ta.shape[1] != tb.shape[1]:
            raise DataError(f"similarity: expected (N, dim) and (M, dim) embeddings, got {tuple(ta.shape)} and "
                            f"{tuple(tb.shape)}")
        return (F.normalize(ta, dim=-1) @ F.normalize(tb, dim=-1).T).numpy()


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def encode_sentences(model: JointModel, sentences: Sequence[str] | Sequence[Sequence[str]], batch_size: int = 512,
                     verbose: bool = False) -> np.ndarray:
    """Unit-norm float32 embeddings (N, dim) of N captions, row i for caption i.

    Each caption goes through the model's own tokenizer (``model.tokenizer``,
    :meth:`JointModel.token_ids`), as in training and evaluation; a token list
    is joined with spaces first. A caption with no tokens is encoded as an
    empty sequence (its row is what the encoder gives for no words).
    Raises :class:`~vsekit.errors.DataError` when given one string instead of a list.
    """
    if isinstance(sentences, str):  # would otherwise be encoded one character per caption
        raise DataError(f"encode_sentences: expected a list of captions, got one string; pass [{sentences!r}]")
    needs_texts = getattr(model.sentence_encoder, "needs_texts", False)
    captions = model.tokens(sentences) if needs_texts else None
    n = len(sentences)
    out = np.zeros((n, model.dim), dtype=np.float32)
    if n == 0:
        return out
    flat, lengths = model.token_ids(sentences)
    lengths_safe = np.maximum(lengths, 1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    order = np.argsort(-lengths_safe, kind="stable")  # similar lengths together: little padding
    was_training = model.training
    model.eval()
    device = device_of(model)
    bar = tqdm(total=n, desc="encode captions", unit="caption", disable=not verbose, dynamic_ncols=True)
    for idx in token_budget_batches(lengths_safe[order], order, batch_size):
        batch = collate(flat, starts[idx], lengths[idx], [captions[i] for i in idx] if captions is not None else None)
        batch = type(batch)(batch.tokens, batch.lengths.clamp(min=1), batch.texts).to(device)
        out[idx] = model.encode_text(batch).float().cpu().numpy()
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out


def token_budget_batches(sorted_lengths: np.ndarray, order: np.ndarray, batch_size: int,
                          tokens_per_caption: int = 64) -> list[np.ndarray]:
    """Cut ``order`` (longest caption first) into batches of at most ``batch_size`` captions and
    ``batch_size * tokens_per_caption`` padded tokens, so one very long caption does not pad a whole batch."""
    budget = batch_size * tokens_per_caption
    out, start, n = [], 0, len(order)
    while start < n:
        size = max(1, min(batch_size, budget // int(sorted_lengths[start])))
        out.append(order[start : start + size])
        start += size
    return out


@torch.no_grad()
def encode_images(model: JointModel, features: np.ndarray | torch.Tensor, batch_size: int = 2048,
                  verbose: bool = False) -> np.ndarray:
    """Unit-norm float32 embeddings (N, dim) of image feature rows (N, dim_image), row i for row i.

    Region features (N, K, dim_image) (a ``np.memmap`` too) are read and converted to float32 a chunk
    of ``max(1, batch_size // K)`` images at a time, never whole.
    Raises :class:`~vsekit.errors.DataError` when the features are not ``(N, model.dim_image)`` or
    ``(N, K, model.dim_image)``, or a row's embedding is not finite (values too large for float32).
    """
    if torch.is_tensor(features) or np.ndim(features) == 3:
        feats = features  # region features: each chunk converted below
    else:
        feats = torch.as_tensor(np.asarray(features, dtype=np.float32))
    if feats.ndim not in (2, 3) or feats.shape[-1] != model.dim_image:
        raise DataError(f"image features: expected shape (N, {model.dim_image}) or (N, K, {model.dim_image}), "
                        f"got {tuple(feats.shape)}")
    if feats.ndim == 3:
        if not getattr(model.image_encoder, "takes_regions", False):
            raise DataError(f"image features: region features {tuple(feats.shape)}, but this model's image encoder "
                            f"takes one row (N, {model.dim_image}) per image")
        batch_size = max(1, batch_size // max(1, feats.shape[1]))
    was_training = model.training
    model.eval()
    device = device_of(model)
    starts = range(0, len(feats), batch_size)
    out = np.zeros((len(feats), model.dim), dtype=np.float32) if len(starts) != 1 else None
    for start in tqdm(starts, desc="encode images", disable=not verbose, leave=False):
        chunk = feats_tensor(feats[start : start + batch_size]).to(device)
        emb = model.encode_image(chunk).float().cpu()
        if out is None and emb.is_contiguous() and \
                emb.untyped_storage().data_ptr() != chunk.untyped_storage().data_ptr():
            out = emb.numpy()  # one chunk: its embeddings are the result, no copy
        else:
            if out is None:
                out = np.empty((len(feats), model.dim), dtype=np.float32)
            out[start : start + len(emb)] = emb.numpy()
    model.train(was_training)
    if len(bad := nonfinite_rows(out)):  # finite features this model maps to inf/NaN (values far too large)
        raise DataError(f"image features: row {int(bad[0])} (0-based; {len(bad)} row(s) in all) gives a NaN or "
                        f"infinite embedding: its values are too large for this model in float32 (features of "
                        f"a CNN are small numbers); check the features")
    return out


def feats_tensor(rows: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Feature rows (any shape, floating point) as a float32 tensor: a tensor converted on its device (a
    float32 one returned as is), an array (a slice of a read-only ``np.memmap`` too) copied into a new one."""
    if torch.is_tensor(rows):
        return rows.float()
    return torch.from_numpy(np.array(rows, dtype=np.float32))
