"""The static HTML pages: :class:`Query` and :class:`Result` entries rendered as cards, no script.

Every query box and every result is one *card* (class ``card``): a card's
texts wrap inside it (long file names break anywhere), so no text of one card
is drawn over another's at any width (``tests/test_layout.py``). Thumbnails
are relative file paths, or base64 data URIs with ``embed_images=True``;
a result whose image file is not found shows its id and ``image_hint`` (how
to get the pictures) instead: nothing ships Flickr8K's pixels.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import mimetypes
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import attrs

from vsekit.io import atomic_write_text
from vsekit.training.manifest import record_written

log = logging.getLogger(__name__)

THUMB_PX = 224
#: what a card without its picture says when the caller gives no better hint
DEFAULT_IMAGE_HINT = "image file not found"


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


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.4em;overflow-wrap:anywhere}h2{font-size:1.1em;margin:0 0 .4em}
.meta{color:#555;font-size:.9em;overflow-wrap:anywhere}
.card{min-width:0;overflow-wrap:anywhere}
section.query{border:1px solid #ccc;border-radius:6px;padding:.8em;margin:1em 0;display:flex;gap:1em;flex-wrap:wrap}
.q{flex:1 1 12em;max-width:16em}.q .qtext{font-weight:600}
img.thumb{max-width:100%;max-height:14em;border-radius:4px;display:block}
img.small{max-width:100%;max-height:9em;border-radius:4px;display:block}
.noimg{box-sizing:border-box;width:100%;max-width:11em;min-height:5em;background:#eee;display:flex;
 flex-direction:column;align-items:center;justify-content:center;gap:.2em;font-size:.75em;color:#666;
 border-radius:4px;text-align:center;padding:.3em}
.noimg .hint{font-size:.9em;color:#777}
ol.results{flex:100 1 20em;min-width:0;margin:0}
ol.results li{margin:.2em 0}
ol.images{display:grid;grid-template-columns:repeat(auto-fill,minmax(8em,1fr));gap:.6em;list-style:none;padding:0}
ol.images li{border:3px solid transparent;border-radius:6px;padding:.2em;font-size:.8em;margin:0;display:flex;
 flex-direction:column;gap:.15em}
ol.images li .score,ol.images li .rid,ol.images li .mark{display:block;margin:0}
.score{font-family:ui-monospace,monospace;color:#555;margin-right:.4em}
.gt{background:#e6f6e6}ol.images li.gt{border-color:#2a2}
.mark{color:#2a2;font-weight:600;margin-left:.4em}
.rid{color:#777;font-size:.8em;margin-left:.4em}
details{flex-basis:100%;min-width:0;overflow-wrap:anywhere}
img.curves{max-width:100%}
ol.captions img.small,ol.captions .noimg{display:inline-block;vertical-align:middle;max-width:5em;max-height:4em;
 margin-right:.4em}
table.runs{border-collapse:collapse;font-size:.85em;display:block;overflow-x:auto;max-width:100%}
table.runs th,table.runs td{border:1px solid #ccc;padding:.2em .4em;text-align:right;white-space:nowrap}
table.runs td.name{text-align:left}
tr.differs td,li.differs{background:#fde8c8}
ol.protocols{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(16em,1fr));gap:.6em}
ol.protocols li{border:1px solid #ccc;border-radius:6px;padding:.5em;font-size:.85em}
ol.protocols .mark,ol.protocols .rid{margin-left:0}
"""


def image_src(path: Path | None, html_dir: Path, embed: bool = False) -> str | None:
    """A ``src`` for ``path``: a data URI (``embed``), else a path relative to the page (``file://`` if none).

    None when ``path`` is None or no file.
    """
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


@attrs.frozen
class _Ctx:
    html_dir: Path
    embed: bool
    hint: str


def _img(path: Path | None, label: str | None, ctx: _Ctx, cls: str) -> str:
    src = image_src(path, ctx.html_dir, ctx.embed)
    alt = html.escape(label or (path.name if path else ""), quote=True)
    if src is None:
        return (f'<div class="noimg" title="{alt}"><span class="noimg-id">{html.escape(label or "(no image)")}'
                f'</span><span class="hint">{html.escape(ctx.hint)}</span></div>')
    return f'<img class="{cls}" src="{html.escape(src, quote=True)}" alt="{alt}" title="{alt}">'


def _query_box(q: Query, ctx: _Ctx) -> list[str]:
    esc = html.escape
    out = ['<div class="q card">']
    if q.image is not None or (q.kind.startswith("image") and q.id):
        out.append(_img(q.image, q.id, ctx, "thumb query-image"))
    if q.text is not None:
        out.append(f'<div class="qtext">“{esc(q.text)}”</div>')
    if q.id:
        out.append(f'<div class="rid">{esc(q.id)}</div>')
    if q.note:
        out.append(f'<div class="meta">{esc(q.note)}</div>')
    out.append("</div>")
    return out


def _result_items(q: Query, ctx: _Ctx) -> list[str]:
    esc = html.escape
    captions = q.kind.endswith("to-text")
    out = ['<ol class="results captions">' if captions else '<ol class="results images">']
    for r in q.results:
        cls = "hit card gt" if r.gt else "hit card"
        mark = '<span class="mark">✓ ground truth</span>' if r.gt else ""
        head = f'<li class="{cls}" data-rank="{r.rank}" data-score="{r.score:.4f}">'
        if captions:
            thumb = _img(r.image, r.id, ctx, "small") if r.image is not None else ""
            rid = f'<span class="rid">{esc(r.id)}</span>' if r.id else ""
            out.append(f'{head}{thumb}<span class="score">{r.score:.3f}</span>'
                       f'<span class="caption">{esc(r.text or "")}</span>{rid}{mark}</li>')
        else:
            out.append(f'{head}{_img(r.image, r.id, ctx, "small result-image")}'
                       f'<span class="score">#{r.rank} {r.score:.3f}</span>'
                       f'<span class="rid">{esc(r.id or "")}</span>{mark}</li>')
    out.append("</ol>")
    return out


def render_html(title: str, queries: Sequence[Query], html_path: str | Path, *, embed_images: bool = False,
                intro: Sequence[str] = (), extra_html: str = "", image_hint: str = DEFAULT_IMAGE_HINT) -> str:
    """The page as a string; image paths are made relative to ``html_path``'s folder.

    ``intro``: lines shown under the title; ``extra_html``: markup placed before the queries (trusted: the
    caller escapes it); ``image_hint``: the short line a card shows when its image file is not found.
    """
    ctx = _Ctx(Path(html_path).parent, embed_images, image_hint)
    esc = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{esc(title)}</title><style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    out += [f'<p class="meta">{esc(line)}</p>' for line in intro]
    out.append(extra_html)
    for n, q in enumerate(queries, 1):
        out.append(f'<section class="query" data-kind="{esc(q.kind, quote=True)}" id="q{n}">')
        out += _query_box(q, ctx)
        out += _result_items(q, ctx)
        if q.ground_truth:
            items = "".join(f"<li>{esc(t)}</li>" for t in q.ground_truth)
            out.append(f'<details class="ground-truth" open><summary>ground truth</summary><ul>{items}</ul></details>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_html(path: str | Path, title: str, queries: Sequence[Query], *, embed_images: bool = False,
               intro: Sequence[str] = (), extra_html: str = "", image_hint: str = DEFAULT_IMAGE_HINT) -> Path:
    """Write the page of :func:`render_html` atomically; return its path."""
    record_written(path := Path(path))  # listed when written into a run folder (--force clears it)
    atomic_write_text(path, render_html(title, queries, path, embed_images=embed_images, intro=intro,
                                        extra_html=extra_html, image_hint=image_hint))
    return path
