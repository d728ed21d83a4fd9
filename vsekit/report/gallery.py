"""The pages of a model's answers: one ``vsekit retrieve`` query, and the run report's gallery of test queries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from vsekit.metrics import ranks_both
from vsekit.report.curves import curves_html, report_curves
from vsekit.report.pages import Query, Result, write_html
from vsekit.training.manifest import record_written, refuse_foreign

if TYPE_CHECKING:
    from vsekit.retrieval import RetrieveResult

DEV_METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")  # shown in a report's intro


def image_hint() -> str:
    """The line a card shows when its image file is not found: the option and the variable that supply them."""
    from vsekit.data.files import ENV_IMAGES

    return f"no image file: pass --images-dir DIR or set {ENV_IMAGES}"


def retrieval_query(res: RetrieveResult) -> Query:
    """The page entry of a ``vsekit retrieve`` answer (:class:`vsekit.retrieval.RetrieveResult`)."""
    req, rows = res.request, res.rows
    qkind = ("text" if req.text is not None else "image") + ("-to-text" if res.kind == "captions" else "-to-image")
    results = [Result(d["rank"], d["score"], d["text"], d["id"], Path(d["image"]) if d["image"] else None,
                      d["ground_truth"]) for d in rows]
    label = req.text if req.text is not None else (str(req.image) if req.image else f"{req.features} row {req.row}")
    if req.moved():
        label = " ".join([label] + [f"− {w}" for w in req.minus] + [f"+ {w}" for w in req.plus])
    return Query(qkind, results, text=label if req.text is not None or req.moved() else None,
                 id=None if req.image is not None else (f"{req.features} row {req.row}" if req.features else None),
                 image=req.image)


def write_retrieval_page(path: str | Path, res: RetrieveResult, *, embed_images: bool = False) -> Path:
    """Write the HTML page of one ``vsekit retrieve`` answer: the query, its ranked results, the model and bank."""
    bank = res.bank
    return write_html(path, "vsekit retrieve", [retrieval_query(res)], embed_images=embed_images,
                      intro=[f"model: {res.ref.path if res.ref else '?'}",
                             f"bank: {bank.path or '(in memory)'} ({len(bank)} {bank.kind})"],
                      image_hint=image_hint())


@attrs.frozen
class Gallery:
    """A split encoded for the gallery: embeddings ``ims`` (N, dim) and ``caps`` (M, dim) float32, caption
    ``texts``, ``cap2img`` (M,) image index of each caption, image ``ids``, the folders image files may be in, and
    the metrics' own 0-based ranks of the ground truth (``ranks_i2t`` (N,), ``ranks_t2i`` (M,))."""

    ims: np.ndarray
    caps: np.ndarray
    texts: list[str]
    cap2img: np.ndarray
    ids: list[str]
    roots: list[Any]
    ranks_i2t: np.ndarray
    ranks_t2i: np.ndarray

    @classmethod
    def encode(cls, model: Any, data: Any, ids: list[str] | None, roots: list[Any]) -> Gallery:
        """Encode a :class:`~vsekit.data.readers.Split` (ids default to ``image I``)."""
        from vsekit.model import encode_images, encode_sentences

        ims, caps = encode_images(model, data.images), encode_sentences(model, data.captions)
        ranks_i2t, ranks_t2i = ranks_both(ims, caps, data.cap2img)  # the metrics' own ranks (ties against the query)
        return cls(ims, caps, list(data.captions), data.cap2img, ids or [f"image {i}" for i in range(data.n_images)],
                   roots, ranks_i2t, ranks_t2i)

    def image(self, i: int) -> Path | None:
        """The image file of image ``i``, if found (see :func:`vsekit.retrieval.find_image`)."""
        from vsekit.retrieval import find_image

        return find_image(self.ids[i], *self.roots)


def gallery_queries(g: Gallery, picks: np.ndarray, k: int) -> list[Query]:
    """For each image of ``picks``: its top-``k`` captions; then for each one's first caption: its top-``k``
    images. Ground truth is marked, and its rank (the metrics' own) noted."""
    queries = []
    for i in picks:
        scores = g.caps @ g.ims[i]
        top = np.argsort(-scores, kind="stable")[:k]
        results = [Result(r + 1, float(scores[j]), g.texts[j], g.ids[g.cap2img[j]], None, bool(g.cap2img[j] == i))
                   for r, j in enumerate(top)]
        queries.append(Query("image-to-text", results, id=g.ids[i], image=g.image(i),
                             ground_truth=[g.texts[j] for j in np.flatnonzero(g.cap2img == i)],
                             note=f"first ground-truth caption at rank {int(g.ranks_i2t[i]) + 1}"))
    for i in picks:
        j = int(np.flatnonzero(g.cap2img == i)[0])
        scores = g.ims @ g.caps[j]
        top = np.argsort(-scores, kind="stable")[:k]
        results = [Result(r + 1, float(scores[m]), None, g.ids[m], g.image(m), bool(m == i)) for r, m in enumerate(top)]
        queries.append(Query("text-to-image", results, text=g.texts[j], id=None,
                             note=f"ground-truth image {g.ids[i]} at rank {int(g.ranks_t2i[j]) + 1}"))
    return queries


def report_intro(queries: list[Query], model_path: Path, split: str, data: Any, meta: dict) -> list[str]:
    """The page's first lines: the model, the split, the checkpoint's dev metrics, a hint when no image is found."""
    caps = f"{len(data.captions)} captions ({data.source})"
    intro = [f"model: {model_path}", f"{split} split: {data.n_images} images, {caps}"]
    best = meta.get("metrics") or {}
    if best:
        intro.append("checkpoint metrics (dev): " + ", ".join(f"{key} {best[key]:.1f}" for key in DEV_METRICS
                                                                 if key in best))
    if not any(q.image for q in queries) and not any(res.image for q in queries for res in q.results):
        intro.append(f"no image files found: ids are shown ({image_hint().removeprefix('no image file: ')} "
                     "for thumbnails)")
    return intro


def is_report_page(path: Path) -> bool:
    """Whether the file ``path`` is a gallery page :func:`write_report` wrote (its title says so)."""
    return path.is_file() and "<title>vsekit report: " in path.read_text(encoding="utf-8", errors="replace")[:4096]


def write_report(run: str | Path, out: str | Path | None = None, *, split: str = "test", n: int = 8, k: int = 5,
                 images_dir: str | Path | None = None, embed_images: bool = False,
                 trust_code: bool = False) -> dict[str, Any]:
    """``curves.png`` and ``gallery.html`` for a run folder (default output: ``RUN/report/``).

    The gallery shows ``n`` image queries (their top-``k`` captions among the
    split's captions) and ``n`` caption queries (top-``k`` images), ground truth
    marked. Thumbnails need the image files: the flickr8k reader knows them;
    for precomputed features pass ``images_dir`` or set ``$VSEKIT_F8K_IMAGES`` (else ids are shown);
    ``trust_code``: see :func:`vsekit.load_model`.
    Returns ``{"curves": path or None, "curves_skipped": reason or None, "gallery": path}``.
    """
    from vsekit import retrieval

    model, ref, meta = retrieval.open_model(Path(run), trust_code=trust_code)
    run_dir = ref.path.parent
    out_dir = Path(out) if out is not None else run_dir / "report"
    refuse_foreign(out_dir / "gallery.html", is_report_page, "vsekit report")  # a user's files are never replaced
    refuse_foreign(out_dir / "curves.png", lambda _: is_report_page(out_dir / "gallery.html"), "vsekit report")
    record_written(out_dir / "curves.png", folders=[out_dir] if out is None else [])  # listed in a run folder
    name = (meta.get("spec") or {}).get("name") or run_dir.name
    result = report_curves(run_dir, out_dir, name)
    data, ids, root = retrieval.Retriever(model, meta, ref, trust_code=trust_code).split_data(split)
    g = Gallery.encode(model, data, ids, [images_dir, root])
    picks = np.unique(np.linspace(0, data.n_images - 1, num=min(n, data.n_images)).round().astype(int))
    queries = gallery_queries(g, picks, k)
    result["gallery"] = write_html(out_dir / "gallery.html", f"vsekit report: {name}", queries,
                                   embed_images=embed_images, intro=report_intro(queries, ref.path, split, data, meta),
                                   extra_html=curves_html(result, out_dir, embed_images), image_hint=image_hint())
    return result
