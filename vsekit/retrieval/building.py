"""A bank built from files and saved (``vsekit bank``): captions, feature rows with ids, image files, or the
model's default caption bank."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs

from vsekit.errors import DataError, VsekitError
from vsekit.image_features import readable_features
from vsekit.retrieval.banks import Bank, bank_files, build_caption_bank, build_image_bank, read_bank_meta
from vsekit.retrieval.extractors import extractor_table
from vsekit.retrieval.files import image_files, read_captions, read_features, read_ids
from vsekit.retrieval.retriever import Retriever
from vsekit.training.manifest import refuse_foreign

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class BankRequest:
    """What to encode into a bank. At most one input: ``captions`` (a captions file), ``features`` (a ``.npy`` of
    feature rows) with ``ids`` (one image id a line) and optionally ``image_root`` (the folder the ids name files
    in), or ``images`` (image files and folders, featurized by ``extractor`` or the model's own). None of them: the
    model's default caption bank. ``output`` is the bank's path (default: where retrieval looks for the default
    bank); ``dtype`` ``float16`` or ``float32``.
    """

    model: str | Path | None = None
    captions: Path | None = None
    features: Path | None = None
    ids: Path | None = None
    images: tuple[Path, ...] = ()
    image_root: Path | None = None
    extractor: str | None = None
    output: Path | None = None
    dtype: str = "float16"
    trust_code: bool = False  # as vsekit.load_model's
    #: no progress bar while encoding captions
    quiet: bool = False

    def check(self) -> None:
        """Refuse two inputs, or features without ids (before anything is read).

        Raises:
            VsekitError: saying which options clash or are missing.
        """
        sources = [n for n, v in (("--captions", self.captions), ("--features", self.features),
                                  ("--images", self.images)) if v]
        if len(sources) > 1:
            raise VsekitError(f"give one input, not {' and '.join(sources)}")
        if self.features is not None and self.ids is None:
            raise VsekitError("--features needs --ids (one image id a line, in row order)")


def _read_inputs(req: BankRequest) -> dict:
    """The request's input files, read before the model loads (a missing file fails fast)."""
    if req.captions is not None:
        texts, ids = read_captions(req.captions)
        return {"texts": texts, "ids": ids}
    if req.features is not None:
        return {"feats": read_features(req.features), "ids": read_ids(req.ids)}  # type: ignore[arg-type]
    if req.images:
        files, folder = image_files(req.images)
        return {"files": files, "folder": folder}
    return {}


def _encode(req: BankRequest, r: Retriever, got: dict) -> Bank:
    if req.captions is not None:
        return build_caption_bank(r.model, got["texts"], got["ids"], dtype=req.dtype, source=str(req.captions),
                                  verbose=not req.quiet)
    if req.features is not None:
        return build_image_bank(r.model, got["feats"], got["ids"], dtype=req.dtype, image_root=req.image_root,
                                source=str(req.features))
    if req.images:
        files, folder = got["files"], got["folder"]
        feats, ok, why = readable_features(r.extractor, files, r.model.dim_image)  # one bad photo stops nothing
        if not ok.any():
            raise DataError(f"{files[0]}: cannot use this image: {why[files[0]]} (and every other one listed)")
        if why:
            listed = "; ".join(f"{p} ({reason})" for p, reason in list(why.items())[:5])
            log.warning("%d image(s) could not be read and are left out of the bank: %s%s", len(why), listed,
                        " ..." if len(why) > 5 else "")
        files = [f for f, good in zip(files, ok, strict=True) if good]
        ids = [f.relative_to(folder).as_posix() if folder else str(f.resolve()) for f in files]
        table = extractor_table(r.meta, r.model.dim_image, req.extractor)
        return build_image_bank(r.model, feats, ids, dtype=req.dtype, image_root=folder, extractor=table,
                                source=", ".join(str(p) for p in req.images))
    return r.build_default_bank("captions", verbose=not req.quiet)


def make_bank(req: BankRequest) -> Bank:
    """Encode the request's input once into a bank and save it (``NAME.json`` + ``NAME.safetensors``); the bank's
    ``path`` is the JSON written.

    Raises:
        VsekitError: a bad request (:meth:`BankRequest.check`), no ``output`` for a model with no folder of its
            own, or any input, model or extractor problem (each message names its file).
    """
    req.check()
    if req.output is not None:  # a bank the user names: neither of its files may be someone else's
        meta, weights = bank_files(req.output)
        refuse_foreign(meta, lambda p: bool(read_bank_meta(p, weights)), "vsekit bank")  # a bank's JSON is ours
        refuse_foreign(weights, lambda _: bool(read_bank_meta(meta, weights)), "vsekit bank")
    got = _read_inputs(req)
    r = Retriever.load(req.model, extractor=req.extractor, trust_code=req.trust_code)
    bank = _encode(req, r, got)
    target = req.output if req.output is not None else r.save_target(bank.kind)
    if target is None:
        raise VsekitError("give -o BANK: this model has no folder for a default bank")
    bank.save(target)
    return bank
