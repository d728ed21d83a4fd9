"""One retrieval query as ``vsekit retrieve`` asks it: a request in, ranked rows out.

A query is an image file, a caption, or a row of precomputed image features,
optionally moved by word arithmetic; it searches a bank given by path or the
model's default bank (captions for an image, images for a text or an
arithmetic query).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.errors import DataError, VsekitError
from vsekit.retrieval.banks import Bank, Hit, find_image, load_bank
from vsekit.retrieval.files import read_features
from vsekit.retrieval.models import ModelRef
from vsekit.retrieval.queries import arithmetic, embed_features
from vsekit.retrieval.retriever import Retriever


@attrs.frozen(kw_only=True)
class RetrieveRequest:
    """What to search for and where. Exactly one of ``image`` (a file), ``text`` or ``features`` (a ``.npy`` of
    feature rows, of which ``row`` is the query) is given; ``minus``/``plus`` words move the query.

    ``model`` is a run folder, checkpoint or installed model's name (None: the default model); ``bank`` a bank path
    (None: the model's default bank of the ``search`` kind); ``images_dir`` where result images lie.
    """

    model: str | Path | None = None
    image: Path | None = None
    text: str | None = None
    features: Path | None = None
    row: int = 0
    k: int = 5
    bank: Path | None = None
    search: str | None = None
    minus: tuple[str, ...] = ()
    plus: tuple[str, ...] = ()
    extractor: str | None = None
    images_dir: Path | None = None
    trust_code: bool = False  # as vsekit.load_model's
    #: no progress bar and no "building the bank" line when a default bank is built on first use
    quiet: bool = False

    def check(self) -> None:
        """Refuse a request without exactly one query, or with a missing image file (before any model loads).

        Raises:
            VsekitError: saying which query options were given.
        """
        given = [n for n, v in (("--image", self.image), ("--text", self.text), ("--features", self.features))
                 if v is not None]
        if len(given) != 1:
            raise VsekitError("give one query: --image PATH, --text TEXT or --features FILE.npy"
                              + (f" (got {' and '.join(given)})" if given else ""))
        if self.image is not None and not self.image.is_file():
            raise VsekitError(f"{self.image}: no such image file")

    def moved(self) -> bool:
        """Whether word arithmetic moves the query."""
        return bool(self.minus or self.plus)

    def query_dict(self) -> dict[str, Any]:
        """The query as JSON: ``image``, ``text``, ``features``, ``row`` (None without features), ``minus``,
        ``plus``."""
        return {"image": str(self.image) if self.image else None, "text": self.text,
                "features": str(self.features) if self.features else None,
                "row": self.row if self.features else None, "minus": list(self.minus), "plus": list(self.plus)}


@attrs.frozen(kw_only=True)
class RetrieveResult:
    """The answer to a :class:`RetrieveRequest`: the bank searched, its ``kind`` and the ranked ``rows``.

    Each row is :meth:`Hit.to_dict` plus ``image`` (the result's image file, or None) and ``ground_truth``
    (whether the result is the query image itself, by file name).
    """

    request: RetrieveRequest
    ref: ModelRef | None
    bank: Bank
    kind: str
    rows: list[dict[str, Any]]

    def to_dict(self, html: Path | None = None) -> dict[str, Any]:
        """The result as ``vsekit retrieve --json`` prints it (``html``: the page written, if any)."""
        bank = self.bank
        return {"model": str(self.ref.path) if self.ref else None, "bank": str(bank.path) if bank.path else None,
                "bank_size": len(bank), "search": self.kind, "k": self.request.k, "query": self.request.query_dict(),
                "results": self.rows, "html": str(html) if html else None}


def query_vector(r: Retriever, req: RetrieveRequest) -> np.ndarray:
    """The unit-norm query (dim,) of a request: its image, feature row or text, moved by its words.

    Raises:
        VsekitError: a ``row`` outside the features file, or a query the model cannot read.
    """
    if req.image is not None:
        vec = r.embed_image(req.image)
    elif req.features is not None:
        feats = read_features(req.features)
        if req.row >= len(feats):
            raise VsekitError(f"{req.features}: --row {req.row}, but the file has {len(feats)} rows")
        if feats.ndim not in (2, 3) or feats.shape[-1] != r.model.dim_image:
            raise DataError(f"{req.features}: holds features of shape {tuple(feats.shape)}, but this model takes "
                            f"(N, {r.model.dim_image}) rows (or (N, K, {r.model.dim_image}) regions): features of "
                            f"the extractor the model was trained on")
        vec = embed_features(r.model, feats[req.row])
    else:
        vec = r.embed_text(req.text)  # type: ignore[arg-type]
    if req.moved():
        vec = arithmetic(r.model, vec, req.minus, req.plus)
    return vec


def result_rows(hits: list[Hit], req: RetrieveRequest, bank: Bank) -> list[dict[str, Any]]:
    """The hits as JSON rows, with their image files (looked up in ``images_dir``, then the bank's image root)."""
    roots = (req.images_dir, bank.meta.get("image_root"))
    query_id = req.image.name if req.image is not None else None
    rows = []
    for h in hits:
        d = h.to_dict()
        path = find_image(h.id, *roots)
        d["image"] = str(path) if path else None
        d["ground_truth"] = bool(query_id and h.id == query_id)
        rows.append(d)
    return rows


def run_query(req: RetrieveRequest) -> RetrieveResult:
    """Answer one request: load the model (and the bank given), embed the query, search the ``k`` best rows.

    Raises:
        VsekitError: a bad request (:meth:`RetrieveRequest.check`), a ``search`` kind that is not the given bank's,
            or any model, bank, image or query problem (each message names its file).
    """
    req.check()
    r = Retriever.load(req.model, extractor=req.extractor, trust_code=req.trust_code)
    bank = load_bank(req.bank, r.model) if req.bank is not None else None
    if bank is not None and req.search is not None and req.search != bank.kind:
        raise VsekitError(f"--search {req.search}, but {bank.path} is a bank of {bank.kind}")
    kind = req.search or (bank.kind if bank is not None else
                          ("images" if req.text is not None or req.moved() else "captions"))
    vec = query_vector(r, req)
    bank = bank if bank is not None else r.bank(kind, verbose=not req.quiet)
    hits = bank.search(vec, req.k)
    return RetrieveResult(request=req, ref=r.ref, bank=bank, kind=kind, rows=result_rows(hits, req, bank))
