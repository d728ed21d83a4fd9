"""HTML result pages and run reports.

* :func:`write_html` writes one self-contained page of queries and ranked results (``vsekit retrieve --html``,
  ``vsekit report``): no scripts, no external resources; thumbnails are relative file paths, or base64 data
  URIs with ``embed_images=True``.
* :func:`write_report` turns a run folder into ``curves.png`` (loss and dev rsum against step, from
  ``metrics.jsonl``; needs matplotlib: ``pip install 'vsekit[report]'``) and ``gallery.html`` (test queries
  in both directions, ground truth marked). Files written into a run folder are listed in its manifest.

Flickr8K images belong to their owners (research use only): pages link to the image files by default, so
nothing is copied unless you ask for embedding.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import mimetypes
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.io import atomic_write_bytes, atomic_write_text
from vsekit.metrics import ranks_both
from vsekit.training.manifest import record_written

if TYPE_CHECKING:
    from vsekit.retrieval import RetrieveResult

log = logging.getLogger(__name__)

THUMB_PX = 224
DEV_METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")  # shown in a report's intro


@attrs.define
class Result:
    """One ranked result on a page: a caption (``text``) and/or an image (``image`` file, ``id``)."""

    rank: int
    score: float
    text: str | None = None
    id: str | None = None
    image: Path | None = None
    gt: bool = False


@attrs.define
class Query:
    """One query and its ranked results. ``kind`` is ``image-to-text``, ``text-to-image`` or ``image-to-image``."""

    kind: str
    results: list[Result]
    text: str | None = None
    id: str | None = None
    image: Path | None = None
    ground_truth: list[str] = attrs.Factory(list)
    note: str | None = None


# --------------------------------------------------------------------------
# HTML


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .4em}
.meta{color:#555;font-size:.9em}
section.query{border:1px solid #ccc;border-radius:6px;padding:.8em;margin:1em 0;display:flex;gap:1em;flex-wrap:wrap}
.q{flex:0 0 14em}.q .qtext{font-weight:600}
img.thumb{max-width:14em;max-height:14em;border-radius:4px;display:block}
img.small{max-width:9em;max-height:9em;border-radius:4px;display:block}
.noimg{width:9em;height:6em;background:#eee;display:flex;align-items:center;justify-content:center;
 font-size:.75em;color:#666;border-radius:4px;word-break:break-all;text-align:center;padding:.2em}
ol.results{flex:1 1 20em;margin:0}
ol.results li{margin:.2em 0}
ol.images{display:flex;gap:.6em;flex-wrap:wrap;list-style:none;padding:0;margin:0}
ol.images li{border:3px solid transparent;border-radius:6px;padding:.2em;font-size:.8em;max-width:9.5em}
.score{font-family:ui-monospace,monospace;color:#555;margin-right:.4em}
.gt{background:#e6f6e6}ol.images li.gt{border-color:#2a2}
.mark{color:#2a2;font-weight:600;margin-left:.4em}
.rid{color:#777;font-size:.8em;margin-left:.4em}
details{flex-basis:100%}
img.curves{max-width:100%}
ol.captions img.small{display:inline-block;vertical-align:middle;max-width:5em;max-height:4em;margin-right:.4em}
"""


def image_src(path: Path | None, html_dir: Path, embed: bool = False) -> str | None:
    """A ``src`` for ``path``: a data URI (``embed``), else a path relative to the page (``file://`` if none)."""
    if path is None or not Path(path).is_file():
        return None
    path = Path(path)
    if embed:
        data, mime = _thumbnail_bytes(path)
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    try:
        rel = os.path.relpath(path.resolve(), html_dir.resolve())
        return urllib.parse.quote(Path(rel).as_posix())
    except ValueError:  # another drive
        return path.resolve().as_uri()


def _thumbnail_bytes(path: Path) -> tuple[bytes, str]:
    """A JPEG thumbnail (at most THUMB_PX a side) when Pillow is there, else the file's own bytes."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            return buf.getvalue(), "image/jpeg"
    except ImportError:
        pass
    except Exception as exc:  # not an image Pillow reads: embed the bytes as they are
        log.debug("thumbnail of %s failed: %s", path, exc)
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return path.read_bytes(), mime


def _img(path: Path | None, label: str | None, html_dir: Path, embed: bool, cls: str) -> str:
    src = image_src(path, html_dir, embed)
    alt = html.escape(label or (path.name if path else ""), quote=True)
    if src is None:
        return f'<div class="noimg" title="{alt}">{html.escape(label or "(no image)")}</div>'
    return f'<img class="{cls}" src="{html.escape(src, quote=True)}" alt="{alt}" title="{alt}">'


def render_html(title: str, queries: Sequence[Query], html_path: str | Path, *, embed_images: bool = False,
                intro: Sequence[str] = (), extra_html: str = "") -> str:
    """The page as a string; image paths are made relative to ``html_path``'s folder."""
    html_dir = Path(html_path).parent
    esc = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    out += [f'<p class="meta">{esc(line)}</p>' for line in intro]
    out.append(extra_html)
    for n, q in enumerate(queries, 1):
        out.append(f'<section class="query" data-kind="{esc(q.kind, quote=True)}" id="q{n}">')
        out.append('<div class="q">')
        if q.image is not None or (q.kind.startswith("image") and q.id):
            out.append(_img(q.image, q.id, html_dir, embed_images, "thumb query-image"))
        if q.text is not None:
            out.append(f'<div class="qtext">“{esc(q.text)}”</div>')
        if q.id:
            out.append(f'<div class="rid">{esc(q.id)}</div>')
        if q.note:
            out.append(f'<div class="meta">{esc(q.note)}</div>')
        out.append("</div>")
        if q.kind.endswith("to-text"):
            out.append('<ol class="results captions">')
            for r in q.results:
                cls = "hit gt" if r.gt else "hit"
                thumb = _img(r.image, r.id, html_dir, embed_images, "small") if r.image is not None else ""
                mark = '<span class="mark">✓ ground truth</span>' if r.gt else ""
                rid = f'<span class="rid">{esc(r.id)}</span>' if r.id else ""
                out.append(f'<li class="{cls}" data-rank="{r.rank}" data-score="{r.score:.4f}">{thumb}'
                           f'<span class="score">{r.score:.3f}</span><span class="caption">{esc(r.text or "")}</span>'
                           f"{rid}{mark}</li>")
            out.append("</ol>")
        else:
            out.append('<ol class="results images">')
            for r in q.results:
                cls = "hit gt" if r.gt else "hit"
                mark = '<span class="mark">✓ ground truth</span>' if r.gt else ""
                out.append(f'<li class="{cls}" data-rank="{r.rank}" data-score="{r.score:.4f}">'
                           f'{_img(r.image, r.id, html_dir, embed_images, "small result-image")}'
                           f'<span class="score">#{r.rank} {r.score:.3f}</span>'
                           f'<span class="rid">{esc(r.id or "")}</span>{mark}</li>')
            out.append("</ol>")
        if q.ground_truth:
            items = "".join(f"<li>{esc(t)}</li>" for t in q.ground_truth)
            out.append(f'<details class="ground-truth" open><summary>ground truth</summary><ul>{items}</ul></details>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(path: str | Path, title: str, queries: Sequence[Query], *, embed_images: bool = False,
               intro: Sequence[str] = (), extra_html: str = "") -> Path:
    """Write the page atomically; return its path."""
    record_written(path := Path(path))  # listed when written into a run folder (--force clears it)
    atomic_write_text(path, render_html(title, queries, path, embed_images=embed_images, intro=intro,
                                        extra_html=extra_html))
    return path


# --------------------------------------------------------------------------
# training curves


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The events in metrics.jsonl ``path``, a cut last line skipped. CheckpointError: no file; DataError: bad JSON."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (a run folder has metrics.jsonl)")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            if n == len(lines):
                continue  # a run killed mid-write: its last line may be cut
            raise DataError(f"{path}: line {n} is not JSON") from None
    return rows


def plot_curves(metrics: Sequence[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    """``loss`` (train events) and ``rsum`` (valid events) against step, as a PNG. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VsekitError("training curves need matplotlib: pip install 'vsekit[report]'") from None
    train = [(m["step"], m["loss"]) for m in metrics if m.get("event") == "train" and "loss" in m]
    valid = [(m["step"], m["rsum"]) for m in metrics if m.get("event") == "valid" and "rsum" in m]
    if not train and not valid:
        raise DataError("metrics.jsonl has no train or valid events to plot")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        ax1.plot(*zip(*train, strict=True), lw=1, color="tab:blue")
    ax1.set(xlabel="step", ylabel="training loss", title="loss")
    if valid:
        ax2.plot(*zip(*valid, strict=True), marker="o", lw=1, color="tab:green")
        best = max(valid, key=lambda sv: sv[1])
        ax2.annotate(f"best {best[1]:.1f}", best, textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax2.set(xlabel="step", ylabel="dev rsum", title="dev rsum (R@1+R@5+R@10, both directions)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out


# --------------------------------------------------------------------------
# retrieval pages


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
                             f"bank: {bank.path or '(in memory)'} ({len(bank)} {bank.kind})"])


# --------------------------------------------------------------------------
# the run report


def report_curves(run_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
    """``{"curves": curves.png or None, "curves_skipped": why or None}`` for the run's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    try:
        png = plot_curves(read_metrics(path), out_dir / "curves.png", title=name) if path.is_file() else None
    except VsekitError as exc:
        return {"curves": None, "curves_skipped": str(exc)}
    return {"curves": png, "curves_skipped": None if png else f"{path}: no such file"}


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
        """The image file of image ``i``, if found."""
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


def report_intro(queries: Sequence[Query], model_path: Path, split: str, data: Any, meta: dict) -> list[str]:
    """The page's first lines: the model, the split, the checkpoint's dev metrics, a hint when no image is found."""
    caps = f"{len(data.captions)} captions ({data.source})"
    intro = [f"model: {model_path}", f"{split} split: {data.n_images} images, {caps}"]
    best = meta.get("metrics") or {}
    if best:
        intro.append("checkpoint metrics (dev): " + ", ".join(f"{key} {best[key]:.1f}" for key in DEV_METRICS
                                                                 if key in best))
    if not any(q.image for q in queries) and not any(res.image for q in queries for res in q.results):
        intro.append("no image files found: ids are shown (pass --images-dir DIR for thumbnails)")
    return intro


def curves_html(result: dict[str, Any], out_dir: Path, embed_images: bool) -> str:
    """The curves image (or why they were skipped) as an HTML paragraph."""
    if result["curves"] is not None:
        src = image_src(result["curves"], out_dir, embed_images)
        return f'<p><img class="curves" src="{html.escape(src or "", quote=True)}" alt="training curves"></p>'
    if result["curves_skipped"]:
        return f'<p class="meta">training curves skipped: {html.escape(result["curves_skipped"])}</p>'
    return ""


def write_report(run: str | Path, out: str | Path | None = None, *, split: str = "test", n: int = 8, k: int = 5,
                 images_dir: str | Path | None = None, embed_images: bool = False) -> dict[str, Any]:
    """``curves.png`` and ``gallery.html`` for a run folder (default output: ``RUN/report/``).

    The gallery shows ``n`` image queries (their top-``k`` captions among the
    split's captions) and ``n`` caption queries (top-``k`` images), ground truth
    marked. Thumbnails need the image files: the flickr8k reader knows them;
    for precomputed features pass ``images_dir`` (else ids are shown).
    Returns ``{"curves": path or None, "curves_skipped": reason or None, "gallery": path}``.
    """
    from vsekit import retrieval

    model, ref, meta = retrieval.open_model(Path(run))
    run_dir = ref.path.parent
    out_dir = Path(out) if out is not None else run_dir / "report"
    record_written(out_dir / "curves.png", folders=[out_dir] if out is None else [])  # listed in a run folder
    name = (meta.get("spec") or {}).get("name") or run_dir.name
    result = report_curves(run_dir, out_dir, name)
    data, ids, root = retrieval.Retriever(model, meta, ref).split_data(split)
    g = Gallery.encode(model, data, ids, [images_dir, root])
    picks = np.unique(np.linspace(0, data.n_images - 1, num=min(n, data.n_images)).round().astype(int))
    queries = gallery_queries(g, picks, k)
    result["gallery"] = write_html(out_dir / "gallery.html", f"vsekit report: {name}", queries,
                                   embed_images=embed_images, intro=report_intro(queries, ref.path, split, data, meta),
                                   extra_html=curves_html(result, out_dir, embed_images))
    return result
