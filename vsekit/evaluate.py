"""Encoding and evaluation: ``encode_sentences``, ``encode_images``, ``evalrank`` and the results table."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from vsekit.data.batching import collate
from vsekit.data.readers import Split
from vsekit.metrics import check_folds, check_ties, input_warnings
from vsekit.model import JointModel

log = logging.getLogger(__name__)

COLUMNS = ("i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "rsum")
HEADERS = ("aR@1", "aR@5", "aR@10", "aMedr", "sR@1", "sR@5", "sR@10", "sMedr", "rsum")


def _device(model: torch.nn.Module) -> torch.device:
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
        from vsekit.errors import DataError

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
    device = _device(model)
    for idx in tqdm(_token_budget_batches(lengths_safe[order], order, batch_size), desc="encode captions",
                    disable=not verbose, leave=False):
        batch = collate(flat, starts[idx], lengths[idx], [captions[i] for i in idx] if captions is not None else None)
        batch = type(batch)(batch.tokens, batch.lengths.clamp(min=1), batch.texts).to(device)
        out[idx] = model.encode_text(batch).float().cpu().numpy()
    model.train(was_training)
    return out


def _token_budget_batches(sorted_lengths: np.ndarray, order: np.ndarray, batch_size: int,
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
    """Unit-norm embeddings (N, dim) of image feature rows (N, dim_image)."""
    feats = torch.as_tensor(np.asarray(features, dtype=np.float32) if not torch.is_tensor(features) else features)
    if feats.ndim != 2 or feats.shape[1] != model.dim_image:
        from vsekit.errors import DataError

        raise DataError(f"image features: expected shape (N, {model.dim_image}), got {tuple(feats.shape)}")
    was_training = model.training
    model.eval()
    device = _device(model)
    starts = range(0, len(feats), batch_size)
    out = np.zeros((len(feats), model.dim), dtype=np.float32) if len(starts) != 1 else None
    for start in tqdm(starts, desc="encode images", disable=not verbose, leave=False):
        chunk = feats[start : start + batch_size].float().to(device)
        emb = model.encode_image(chunk).float().cpu()
        if out is None and emb.is_contiguous() and \
                emb.untyped_storage().data_ptr() != feats.untyped_storage().data_ptr():
            out = emb.numpy()  # one chunk: its embeddings are the result, no copy
        else:
            if out is None:
                out = np.empty((len(feats), model.dim), dtype=np.float32)
            out[start : start + len(emb)] = emb.numpy()
    model.train(was_training)
    return out


def evaluate_split(model: JointModel, split: Split, metric: Any = None, folds: int | None = None,
                   verbose: bool = False, ties: str = "pessimistic", log_warnings: bool = True) -> dict[str, Any]:
    """Encode a split and compute the metric (``recall`` by default), with the protocol and any warnings.

    Args:
        model: the joint model.
        split: the split; its ``(N, dim_image)`` features and captions are encoded.
        metric: a :class:`~vsekit.metrics.Metric` (default: ``recall`` with K = 1, 5, 10).
        folds: ``None`` or the number of equal folds (COCO 5-fold 1K); a fold holds >= 10 images.
        verbose: progress bars while encoding.
        ties: the tie rule (``"pessimistic"``, the default, or ``"reference"``); see
            :mod:`vsekit.metrics`. Model selection always uses the default.
        log_warnings: also log each warning (the result holds them either way).

    Returns:
        The metric's values (R@K in %, 1-based median / mean ranks, ``rsum``), plus ``"protocol"``
        (``ties``, ``folds``, ``n_images``, ``n_captions``, ``caps_per_image`` as min/max) and
        ``"warnings"`` (sentences about inputs that make the table meaningless: a tiny split, all-zero,
        constant or repeated feature rows, image embeddings the model collapsed).

    Raises:
        DataError: the features do not fit the model. ProtocolError: bad ``folds`` or ``ties``,
            before anything is encoded.
    """
    if metric is None:
        from vsekit.metrics import RecallMetric

        metric = RecallMetric(RecallMetric.Config())
    if split.dim_image != model.dim_image:
        from vsekit.errors import DataError

        raise DataError(f"{split.source}: {split.dim_image}-d image features, but the model expects {model.dim_image}-d")
    n_folds = check_folds(folds, split.n_images)
    check_ties(ties)
    ims = encode_images(model, split.images, verbose=verbose)
    caps = encode_sentences(model, split.captions, verbose=verbose)
    # A metric written before tie rules existed takes no ``ties``; it is passed only when not the default.
    extra = {} if ties == "pessimistic" else {"ties": ties}
    out = dict(metric.compute(ims, caps, split.cap2img, folds=folds, **extra))
    found = input_warnings(split.images, f"{split.name} image features")
    if not found:  # good features, but does the model tell the images apart?
        found = input_warnings(ims, f"{split.name} image embeddings", tiny=False)
    if log_warnings:
        for w in found:
            log.warning(w)
    per_image = np.bincount(split.cap2img, minlength=split.n_images)
    out["protocol"] = {"ties": ties, "folds": n_folds, "n_images": split.n_images, "n_captions": len(split.captions),
                       "caps_per_image": {"min": int(per_image.min()), "max": int(per_image.max())}}
    out["warnings"] = found
    return out


def scalar_metrics(m: dict[str, Any]) -> dict[str, Any]:
    """The plain numbers of a result of :func:`evaluate_split` (no folds, protocol or warnings): a log line."""
    return {k: v for k, v in m.items() if not isinstance(v, (list, dict))}


def evalrank(model: JointModel | str, data: Any = None, split: str = "test", folds: int | None = None,
             verbose: bool = True, print_table: bool = True, ties: str = "pessimistic") -> dict[str, Any]:
    """Evaluate ``model`` (or a checkpoint path) on ``split`` of ``data`` and print the reference's lines.

    ``data`` is a :class:`Split`, a dataset reader, or a spec file path (its
    ``[data]`` section is used); by default the data of the model's own spec.
    Returns what :func:`evaluate_split` returns (R@K in %, 1-based ranks, protocol, warnings).
    """
    from vsekit import api

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = api.load_model(model)
    split_data = api.resolve_split(model, data, split)
    metrics = evaluate_split(model, split_data, folds=folds, verbose=verbose, ties=ties)
    if print_table:
        print(reference_lines(metrics))
    return metrics


def reference_lines(m: dict[str, Any]) -> str:
    """The reference's two printed lines (R@1, R@5, R@10, medr)."""
    return (f"Image to text: {m['i2t_r1']:.1f}, {m['i2t_r5']:.1f}, {m['i2t_r10']:.1f}, {m['i2t_medr']:.1f}\n"
            f"Text to image: {m['t2i_r1']:.1f}, {m['t2i_r5']:.1f}, {m['t2i_r10']:.1f}, {m['t2i_medr']:.1f}")


def format_table(rows: dict[str, dict[str, Any]] | dict[str, Any], std: dict[str, Any] | None = None) -> str:
    """A fixed-width table of the paper's columns; ``rows`` maps a label to metrics (or is one metrics dict)."""
    if "rsum" in rows and not isinstance(rows["rsum"], dict):
        rows = {"": rows}  # type: ignore[dict-item]
    width = max([len(k) for k in rows] + [5])
    lines = [" " * width + " | " + " ".join(f"{h:>6}" for h in HEADERS[:4]) + " | " +
             " ".join(f"{h:>6}" for h in HEADERS[4:8]) + " | " + f"{HEADERS[8]:>6}"]
    for label, m in rows.items():
        cells = []
        for c in COLUMNS:
            v = m.get(c, float("nan"))
            cells.append(f"{v:6.1f}")
        lines.append(f"{label:<{width}} | " + " ".join(cells[:4]) + " | " + " ".join(cells[4:8]) + " | " + cells[8])
        if std and label in std:
            s = std[label]
            sc = [f"±{s.get(c, 0.0):5.1f}" for c in COLUMNS]
            lines.append(f"{'':<{width}} | " + " ".join(sc[:4]) + " | " + " ".join(sc[4:8]) + " | " + sc[8])
    return "\n".join(lines)
