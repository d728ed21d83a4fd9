"""Queries: a caption or an image feature row embedded in the joint space, and the paper's vector arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vsekit.errors import DataError, VsekitError
from vsekit.model import JointModel


def check_query_text(model: JointModel, text: str | Sequence[str], what: str = "query text") -> None:
    """Refuse a query the model cannot read: empty (no token after the model's tokenizer) or, for a model with a
    word vocabulary, no word it knows -- its embedding would be the same for every such query, and a ranking
    of it means nothing. Raises :class:`~vsekit.errors.DataError` saying which."""
    from vsekit.data.vocab import UNK

    tokens = model.tokens([text])[0]
    shown = text if isinstance(text, str) else " ".join(text)
    if not tokens:
        raise DataError(f"{what} {shown!r} is empty: it has no words to search with")
    if getattr(model.sentence_encoder, "needs_texts", False):
        return  # the encoder reads the text itself: its own tokenizer knows no "unknown word"
    if all(i == UNK for i in model.vocab.encode(tokens, model.n_words)):
        raise DataError(f"{what} {shown!r}: none of its words is in the model's vocabulary "
                        f"({len(model.vocab)} words, tokenizer {model.tokenizer!r}), so it would match at random")


def embed_text(model: JointModel, text: str | Sequence[str]) -> np.ndarray:
    """The unit-norm embedding (dim,) of one query caption.

    Raises :class:`~vsekit.errors.DataError` for an empty text or one with no known word (:func:`check_query_text`).
    """
    from vsekit.model import encode_sentences

    check_query_text(model, text)
    return encode_sentences(model, [text])[0]


def embed_features(model: JointModel, features: np.ndarray | torch.Tensor) -> np.ndarray:
    """The unit-norm embedding (dim,) of one image feature row (dim_image,)."""
    from vsekit.model import encode_images

    f = np.asarray(features, dtype=np.float32)
    return encode_images(model, f.reshape(1, -1))[0]


def arithmetic(model: JointModel, image_vec: np.ndarray | torch.Tensor, minus: Sequence[str] = (),
               plus: Sequence[str] = ()) -> np.ndarray:
    """The paper's multimodal arithmetic: ``normalize(image_vec - sum(embed(minus)) + sum(embed(plus)))``.

    ``image_vec`` is an embedding in the joint space (dim,), e.g. from
    :func:`vsekit.encode_images`; each word (or phrase) is embedded as a
    one-word caption. Returns a unit-norm (dim,) float32 vector.
    """
    from vsekit.model import encode_sentences

    v = np.asarray(image_vec.detach().cpu() if torch.is_tensor(image_vec) else image_vec, dtype=np.float32).copy()
    if v.shape != (model.dim,):
        raise DataError(f"arithmetic: image_vec must be a joint-space embedding of shape ({model.dim},), got {v.shape} "
                        f"(encode image features with vsekit.encode_images first)")
    for word in (*minus, *plus):
        check_query_text(model, word, "arithmetic word")
    if minus:
        v -= encode_sentences(model, list(minus)).sum(axis=0)
    if plus:
        v += encode_sentences(model, list(plus)).sum(axis=0)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-8:
        raise VsekitError("arithmetic: the words cancel the query out (zero vector); change the words")
    return v / norm


def unreadable_captions(model: JointModel, texts: Sequence[str]) -> list[int]:
    """The 0-based indices of ``texts`` with no word in the model's vocabulary (or no token at all): their
    embeddings say nothing about them. Empty for an encoder that reads the texts itself (``needs_texts``)."""
    from vsekit.data.vocab import UNK

    if getattr(model.sentence_encoder, "needs_texts", False):
        return []
    return [i for i, toks in enumerate(model.tokens(list(texts)))
            if all(t == UNK for t in model.vocab.encode(toks, model.n_words))]
