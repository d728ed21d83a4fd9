"""What a request may carry: a bounded body, an image upload, a text, ``k``, words; each fault a 4xx JSON error.

Nothing here reads a file the client names: an upload's bytes are decoded in
memory and only a file this server writes (in its own temporary folder, see
:func:`vsekit.retrieval.image_rows`) reaches the image feature extractor.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@attrs.frozen(kw_only=True)
class Limits:
    """What one request may hold: ``max_upload_bytes`` (whole body, bytes), ``max_text_chars`` (one text),
    ``max_k`` (results), ``max_texts`` (texts per encode), ``max_words`` (words per side of arithmetic)."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_text_chars: int = 500
    max_k: int = 100
    max_texts: int = 64
    max_words: int = 8

    def to_dict(self) -> dict[str, int]:
        """The limits as JSON (``/api/info``)."""
        return attrs.asdict(self)


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` (4xx) and a one-line ``message`` for the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413, by its Content-Length at once,
    else while it is read (the reader raises :class:`ApiError` 413 as soon as the count passes the limit)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the wrapped app with a counting ``receive``; answer 413 without calling it when the declared
        length is over the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await send_json(send, 413, {"error": self.too_large(), "status": 413})
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, self.too_large())
            return message

        await self.app(scope, counted, send)

    def too_large(self) -> str:
        """The 413 message."""
        return f"request too large: at most {self.limit / 2**20:g} MB (start the server with --max-upload-mb to change)"


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    """Send a whole JSON response through a raw ASGI ``send`` (for middleware, before any app runs)."""
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def field_k(value: Any, limits: Limits, default: int = 5) -> int:
    """``k`` from a form or JSON value (None: ``default``).

    Raises:
        ApiError: 400 when it is not an integer in ``1..limits.max_k``.
    """
    if value is None or value == "":
        return default
    try:
        k = int(value)
        if isinstance(value, float) or str(k) != str(value).strip().lstrip("+"):
            raise ValueError
    except (TypeError, ValueError):
        raise ApiError(400, f"k must be a whole number from 1 to {limits.max_k}, got {value!r}") from None
    if not 1 <= k <= limits.max_k:
        raise ApiError(400, f"k must be from 1 to {limits.max_k}, got {k}")
    return k


def field_text(value: Any, limits: Limits, name: str = "text") -> str:
    """A query text: present, a string, not blank, at most ``limits.max_text_chars`` characters.

    Raises:
        ApiError: 400 saying which.
    """
    if value is None:
        raise ApiError(400, f"missing field {name!r} (a caption to search with)")
    if not isinstance(value, str):
        raise ApiError(400, f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ApiError(400, f"field {name!r} is empty")
    if len(value) > limits.max_text_chars:
        raise ApiError(400, f"field {name!r} is too long: {len(value)} characters, at most {limits.max_text_chars}")
    return value


def field_words(values: list[Any], limits: Limits, name: str) -> tuple[str, ...]:
    """Arithmetic words from repeated form fields, each value split at commas; blanks dropped.

    Raises:
        ApiError: 400 for more than ``limits.max_words`` words or a word over ``limits.max_text_chars``.
    """
    words = [w.strip() for v in values if isinstance(v, str) for w in v.split(",") if w.strip()]
    if len(words) > limits.max_words:
        raise ApiError(400, f"field {name!r}: {len(words)} words, at most {limits.max_words}")
    for w in words:
        field_text(w, limits, name)
    return tuple(words)


@attrs.frozen
class Upload:
    """A checked image upload: ``data`` (the bytes as sent), ``turned`` (its EXIF orientation turns it) and
    ``name`` (the client's file name, for messages only: never opened)."""

    data: bytes
    turned: bool
    name: str

    def label(self) -> str:
        """How messages name the upload."""
        return f"uploaded image {self.name!r}"

    def source(self) -> Any:
        """What the extractor gets: the bytes as sent, or for a turned photo the upright PIL image
        (``PIL.ImageOps.exif_transpose``), decoded here: call it where the pixels may be decoded (the inference
        thread), not on the event loop.

        Raises:
            ApiError: 400 when the pixels cannot be decoded.
        """
        if not self.turned:
            return self.data
        from PIL import Image, ImageOps

        try:
            with Image.open(io.BytesIO(self.data)) as im:
                return ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ApiError(400, f"{self.label()}: corrupt or truncated image data: {exc}") from None


def decode_image(data: bytes, name: str = "image") -> Upload:
    """Check an uploaded image in memory: its header (format, size) and EXIF orientation; the pixels are decoded
    later (:meth:`Upload.source`, the extractor).

    Raises:
        ApiError: 400 for an empty upload or a corrupt one; 415 for data Pillow cannot identify as an image; 413
            for more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb guard).
    """
    from PIL import Image, UnidentifiedImageError

    label = f"uploaded image {name!r}"
    if not data:
        raise ApiError(400, f"{label}: the upload is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and w * h > limit:
            raise ApiError(413, f"{label}: {w}x{h} pixels, more than the {limit} Pillow decodes")
        if w < 1 or h < 1:
            raise ApiError(400, f"{label}: the image has no pixels ({w}x{h})")
        turned = im.getexif().get(0x0112, 1) not in (None, 1)
        Image.open(io.BytesIO(data)).verify()  # the container is sound (PNG: chunk checksums)
        return Upload(data, turned, name)
    except ApiError:
        raise
    except UnidentifiedImageError:
        raise ApiError(415, f"{label}: not an image (Pillow knows no such format; send a JPEG, PNG, ...)") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"{label}: too many pixels: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ApiError(400, f"{label}: corrupt or truncated image data: {exc}") from None


async def read_upload(form: Any, field: str = "image") -> Upload:
    """The image file of a multipart ``form`` field, decoded (:func:`decode_image`).

    Raises:
        ApiError: 400 when the field is missing or is not a file upload; see :func:`decode_image`.
    """
    item = form.get(field)
    if item is None:
        raise ApiError(400, f"missing field {field!r} (a file upload: multipart/form-data)")
    if isinstance(item, str) or not hasattr(item, "read"):
        raise ApiError(400, f"field {field!r} must be a file upload, got a text field")
    data = await item.read()
    return decode_image(data, item.filename or field)
