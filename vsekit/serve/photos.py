"""The image bank of the user's own photos (``vsekit serve --images DIR``), built once and cached.

The bank is built by :func:`vsekit.retrieval.make_bank` (the ``vsekit bank
--images`` path) into the cache folder (:func:`vsekit.retrieval.cache_dir`),
under a name made of the folder, the model's weights, the extractor and every
photo's name, size and modification time: a changed folder or model gets a
new bank, an unchanged one is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from vsekit.errors import VsekitError
from vsekit.retrieval import (
    BankRequest,
    ImageBank,
    Retriever,
    bank_files,
    cache_dir,
    extractor_table,
    image_files,
    load_bank,
    make_bank,
)

log = logging.getLogger(__name__)


def photo_bank_path(r: Retriever, folder: Path, extractor: str | None = None) -> Path:
    """Where the cached bank of the photos in ``folder`` lies for the retriever's model (see the module doc).

    Raises:
        DataError: ``folder`` does not exist or holds no image file.
        VsekitError: the model records no image feature extractor and ``extractor`` names none.
    """
    files, _ = image_files([folder])
    listing = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = {"folder": str(folder.resolve()), "weights": r.meta.get("weights_sha256"),
           "extractor": extractor_table(r.meta, r.model.dim_image, extractor), "files": listing}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "banks" / f"photos-{digest}.images_bank"


def photo_bank(r: Retriever, model: str | Path | None, folder: Path, extractor: str | None = None, *,
               trust_code: bool = False) -> ImageBank:
    """The image bank of the photos in ``folder`` (not recursing), loaded from the cache or built and saved there.

    ``model`` is what ``r`` was loaded from (the bank is built by :func:`vsekit.retrieval.make_bank`, which loads
    it by that name, with ``trust_code``). The bank's ids are the file names; its ``image_root`` is ``folder``.

    Raises:
        DataError: ``folder`` does not exist, holds no image file, or an image cannot be read (named).
        VsekitError: no image feature extractor for this model (see :func:`vsekit.retrieval.extractor_table`).
    """
    target = photo_bank_path(r, folder, extractor)
    if bank_files(target)[0].is_file():
        try:
            bank = load_bank(target, r.model)
            if isinstance(bank, ImageBank):
                log.info("loaded the cached bank of %s: %s", folder, bank.path)
                return bank
        except VsekitError as exc:
            log.warning("rebuilding the bank of %s (%s)", folder, exc)
    log.warning("building the image bank of %s once (cached in %s)", folder, target.parent)
    bank = make_bank(BankRequest(model=model, images=(folder,), extractor=extractor, output=target,
                                 trust_code=trust_code))
    return bank  # type: ignore[return-value]
