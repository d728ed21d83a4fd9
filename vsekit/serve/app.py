"""The Starlette app of ``vsekit serve``: the page, its JSON API and the thumbnails, over one loaded retriever.

Endpoints (every error is JSON ``{"error": MESSAGE, "status": CODE}`` with a 4xx status):

* ``GET /`` the page; ``GET /static/NAME`` its script and style; ``GET /api/info`` the model, banks and limits;
* ``POST /api/captions`` (multipart ``image``, ``k``): the top-``k`` captions for an uploaded image;
* ``POST /api/images`` (JSON or form ``text``, ``k``): the top-``k`` images for a caption;
* ``POST /api/arithmetic`` (multipart ``image``, ``minus``, ``plus``, ``k``): images near image - words + words;
* ``POST /api/encode`` (JSON ``{"texts": [...]}`` or multipart ``image``): unit-norm embeddings;
* ``GET /thumbs/ID``: the image of a bank id, only for ids in a bank and files inside their folder.

Every query runs on one inference thread, in arrival order, so inference is serialised at the process's torch
threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vsekit.data.files import IMAGE_SUFFIXES
from vsekit.errors import DataError, VsekitError
from vsekit.retrieval import Bank, ImageBank, Retriever, arithmetic, image_rows, unreadable_captions
from vsekit.serve.uploads import (
    ApiError,
    BodyLimit,
    Limits,
    Upload,
    field_k,
    field_text,
    field_words,
    read_upload,
)

STATIC = Path(__file__).resolve().with_name("static")
#: the page loads only its own files: no inline script or style, nothing from another origin
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
#: files up to this size are sent as they are; bigger ones as a JPEG of at most THUMB_SIDE pixels a side
THUMB_RAW_BYTES = 400_000
THUMB_SIDE = 400


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` (CSP, nosniff, no referrer, no framing) to every response."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the wrapped app, adding the headers to its response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with)


class Service:
    """The loaded retriever, the banks searched, where thumbnails come from, and the one inference thread.

    ``images_dir`` is where the ids of the model's banks are image files (``--images-dir``); ``image_bank`` replaces
    the model's default image bank (e.g. the user's photos), its files found in its own ``image_root``.
    """

    def __init__(self, retriever: Retriever, *, images_dir: Path | None = None, image_bank: ImageBank | None = None,
                 limits: Limits | None = None) -> None:
        self.r = retriever
        self.limits = limits or Limits()
        # one thread runs every query: serialised at the process's torch threads, and one allocator arena (a pool
        # of threads taking turns grew the resident memory by ~350 MB under 32 concurrent clients)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vsekit-inference")
        self.captions: Bank = retriever.caption_bank
        self.images: Bank = image_bank if image_bank is not None else retriever.image_bank
        self.roots: dict[str, Path] = {}
        if images_dir is not None:
            root = Path(images_dir).resolve()
            self.roots.update((i, root) for bank in (self.captions, self.images) for i in bank.ids if i)
        if image_bank is not None and image_bank.image_root is not None:
            self.roots.update((i, image_bank.image_root.resolve()) for i in image_bank.ids if i)
        self.image_problem: str | None = None
        try:  # build the extractor and load its weights now, on the inference thread: no slow first query
            self.worker.submit(self.warm_up).result()
        except VsekitError as exc:
            self.image_problem = str(exc)

    def warm_up(self) -> None:
        """Build the image feature extractor and run it once on a small grey image.

        Raises:
            VsekitError: no image feature extractor for this model, or it fails on a plain image.
        """
        from PIL import Image

        image_rows(self.r.extractor, [Image.new("RGB", (64, 48), (128, 128, 128))], self.r.model.dim_image)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the one inference thread, after the queries queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def image_vector(self, upload: Upload) -> np.ndarray:
        """The unit-norm embedding (dim,) of an uploaded image (call on the inference thread: :meth:`run`).

        Raises:
            ApiError: 503 when this server has no image feature extractor; 400 when the extractor cannot use the
                image (its reason, the upload named).
        """
        if self.image_problem is not None:
            raise ApiError(503, f"image queries are off on this server: {self.image_problem}")
        try:
            row = image_rows(self.r.extractor, [upload.source()], self.r.model.dim_image)[0]
        except DataError as exc:
            why = str(exc).split(": cannot use this image: ", 1)[-1]
            raise ApiError(400, f"{upload.label()}: cannot use this image: {why}") from None
        return self.r.embed_image(row)

    def thumb_file(self, image_id: str) -> Path | None:
        """The image file of a bank id: only an id of a searched bank with a known folder, a relative path
        resolving inside that folder to an existing image file; else None. No other path is ever opened."""
        root = self.roots.get(image_id)
        if root is None or Path(image_id).is_absolute() or "\\" in image_id:
            return None
        p = (root / image_id).resolve()
        if not p.is_relative_to(root) or p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            return None
        return p

    def rows(self, hits: list[Any], kind: str) -> list[dict[str, Any]]:
        """Hits as JSON rows: ``rank``, ``score``, ``id``, ``text`` (captions) and ``thumb`` (URL or None)."""
        out = []
        for h in hits:
            d: dict[str, Any] = {"rank": h.rank, "score": round(float(h.score), 6), "id": h.id}
            if kind == "captions":
                d["text"] = h.text
            d["thumb"] = f"/thumbs/{quote(h.id)}" if h.id and self.thumb_file(h.id) else None
            out.append(d)
        return out

    def answer(self, query: dict[str, Any], bank: Bank, hits: list[Any]) -> dict[str, Any]:
        """The JSON answer of a search: ``query``, ``search`` (bank kind), ``bank_size``, ``results``."""
        return {"query": query, "search": bank.kind, "bank_size": len(bank), "results": self.rows(hits, bank.kind)}

    def info(self) -> dict[str, Any]:
        """What ``/api/info`` says: the model, the banks, whether image queries and thumbnails work, the limits."""
        ref = self.r.ref
        return {"model": (ref.name or str(ref.path)) if ref else None, "dim": self.r.model.dim,
                "captions": {"size": len(self.captions), "source": self.captions.meta.get("source")},
                "images": {"size": len(self.images), "source": self.images.meta.get("source")},
                "image_queries": self.image_problem is None, "image_problem": self.image_problem,
                "thumbnails": bool(self.roots), "limits": self.limits.to_dict()}


async def payload(request: Request) -> Any:
    """The request's fields: a JSON object, or a form (multipart or urlencoded) read within the body limit.

    Raises:
        ApiError: 400 for JSON that is not an object; 415 for another content type.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the JSON body must be an object, e.g. {\"text\": \"a dog\", \"k\": 5}")
        return body
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await request.form(max_files=2, max_fields=32, max_part_size=64 * 1024)
    raise ApiError(415, f"send multipart/form-data or application/json, not {ctype or 'no content type'!r}")


def multi(fields: Any, name: str) -> list[Any]:
    """All values of a repeated field of a form, or of a JSON string or list."""
    if hasattr(fields, "getlist"):
        return fields.getlist(name)
    value = fields.get(name)
    return value if isinstance(value, list) else [] if value is None else [value]


def endpoints(svc: Service) -> list[Route]:
    """The API routes over ``svc`` (see the module doc)."""
    lim = svc.limits

    async def info(request: Request) -> Response:
        return JSONResponse(svc.info())

    async def captions(request: Request) -> Response:
        form = await payload(request)
        upload, k = await read_upload(form), field_k(form.get("k"), lim)
        hits = await svc.run(lambda: svc.captions.search(svc.image_vector(upload), k))
        return JSONResponse(svc.answer({"image": upload.name, "k": k}, svc.captions, hits))

    async def images(request: Request) -> Response:
        fields = await payload(request)
        text, k = field_text(fields.get("text"), lim), field_k(fields.get("k"), lim)
        hits = await svc.run(lambda: svc.images.search(svc.r.embed_text(text), k))
        return JSONResponse(svc.answer({"text": text, "k": k}, svc.images, hits))

    async def arith(request: Request) -> Response:
        form = await payload(request)
        upload, k = await read_upload(form), field_k(form.get("k"), lim)
        minus, plus = field_words(multi(form, "minus"), lim, "minus"), field_words(multi(form, "plus"), lim, "plus")
        if not minus and not plus:
            raise ApiError(400, "give at least one word in 'minus' or 'plus' (e.g. minus=dog, plus=cat)")
        query = {"image": upload.name, "minus": list(minus), "plus": list(plus), "k": k}
        hits = await svc.run(lambda: svc.images.search(arithmetic(svc.r.model, svc.image_vector(upload), minus,
                                                                  plus), k))
        return JSONResponse(svc.answer(query, svc.images, hits))

    async def encode(request: Request) -> Response:
        fields = await payload(request)
        if fields.get("image") is not None:
            upload = await read_upload(fields)
            vecs = (await svc.run(svc.image_vector, upload))[None, :]
            return JSONResponse({"kind": "image", "dim": int(vecs.shape[1]), "count": 1, "vectors": vecs.tolist()})
        texts = multi(fields, "texts")
        if not texts:
            raise ApiError(400, "field 'texts' is empty: give at least one caption" if "texts" in fields else
                           "missing field 'texts' (a list of captions) or 'image' (a file upload)")
        if len(texts) > lim.max_texts:
            raise ApiError(400, f"field 'texts': {len(texts)} texts, at most {lim.max_texts}")
        texts = [field_text(t, lim, f"texts[{i}]") for i, t in enumerate(texts)]
        vecs = await svc.run(_encode_texts, svc.r, texts)
        return JSONResponse({"kind": "texts", "dim": int(vecs.shape[1]), "count": len(texts),
                             "vectors": vecs.tolist(), "unreadable": unreadable_captions(svc.r.model, texts)})

    return [Route("/api/info", info), Route("/api/captions", captions, methods=["POST"]),
            Route("/api/images", images, methods=["POST"]), Route("/api/arithmetic", arith, methods=["POST"]),
            Route("/api/encode", encode, methods=["POST"])]


def _encode_texts(r: Retriever, texts: list[str]) -> np.ndarray:
    from vsekit.model import encode_sentences

    return np.asarray(encode_sentences(r.model, texts), dtype=np.float32)


@functools.lru_cache(maxsize=256)
def small_jpeg(path: str, mtime_ns: int) -> bytes:
    """A JPEG of the image at ``path`` at most :data:`THUMB_SIDE` pixels a side, EXIF orientation applied (cached by
    path and modification time)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def thumbs_route(svc: Service) -> Route:
    """``GET /thumbs/ID``: the file of a bank id (:meth:`Service.thumb_file`), 404 for anything else."""

    async def thumb(request: Request) -> Response:
        p = svc.thumb_file(request.path_params["image_id"])
        if p is None:
            raise ApiError(404, "no such image in this server's banks (or no --images-dir to find it in)")
        st = p.stat()
        if st.st_size <= THUMB_RAW_BYTES:
            return FileResponse(p, headers={"cache-control": "max-age=3600"})
        try:
            data = await run_in_threadpool(small_jpeg, str(p), st.st_mtime_ns)
        except (OSError, ValueError) as exc:
            raise ApiError(404, f"cannot read that image: {exc}") from None
        return Response(data, media_type="image/jpeg", headers={"cache-control": "max-age=3600"})

    return Route("/thumbs/{image_id:path}", thumb)


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, str(exc.detail)
    else:
        status, message = 400, str(exc)
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=getattr(exc, "headers", None))


def create_app(retriever: Retriever, *, images_dir: Path | None = None, image_bank: ImageBank | None = None,
               limits: Limits | None = None) -> Starlette:
    """The web app over a loaded ``retriever`` (its caption bank, and ``image_bank`` or its default image bank).

    ``images_dir`` is the folder the banks' ids name image files in (thumbnails; none without it, unless
    ``image_bank`` records its own folder). ``limits`` bound each request (:class:`Limits`). The banks and the image
    feature extractor are loaded here, once. Run it with any ASGI server (``vsekit serve`` uses uvicorn).

    Raises:
        VsekitError: a default bank cannot be loaded or built.
    """
    svc = Service(retriever, images_dir=images_dir, image_bank=image_bank, limits=limits)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)  # browsers ask; an empty answer keeps their console clean

    routes = [Route("/", index), Route("/favicon.ico", no_icon), *endpoints(svc), thumbs_route(svc),
              Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        svc.worker.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=routes, exception_handlers={ApiError: _error, VsekitError: _error, HTTPException: _error},
                    middleware=[Middleware(SecurityHeaders), Middleware(BodyLimit, limit=svc.limits.max_upload_bytes)],
                    lifespan=lifespan)
    app.state.service = svc
    return app
