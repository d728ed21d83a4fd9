"""Start ``vsekit serve``: load the model and its banks once, bind the socket, run uvicorn until stopped."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import attrs

from vsekit.errors import VsekitError
from vsekit.serve import require_web


@attrs.frozen(kw_only=True)
class ServeRequest:
    """What ``vsekit serve`` runs: ``model`` (run folder, checkpoint or installed name; None: the default model),
    ``host`` and ``port`` (0: a free port), ``images_dir`` (where the banks' image files lie, for thumbnails),
    ``photos`` (a folder of the user's photos: their image bank, built once and cached, is searched instead of the
    model's), ``extractor`` (image feature extractor name), ``threads`` (torch threads), ``max_upload_mb``,
    ``trust_code`` (as :func:`vsekit.load_model`'s: let the model import the code its files name)."""

    model: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    images_dir: Path | None = None
    photos: Path | None = None
    extractor: str | None = None
    threads: int = 1
    max_upload_mb: float = 10.0
    trust_code: bool = False


def url_of(host: str, port: int) -> str:
    """``http://HOST:PORT/``, an IPv6 address in brackets."""
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    return f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port the system picks).

    Raises:
        VsekitError: the address is unknown or the port is taken or not allowed.
    """
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise VsekitError(f"--host {host}: cannot use this address: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise VsekitError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (try another --port, "
                          f"or --port 0 for a free one)") from None
    return sock


def build_app(req: ServeRequest) -> object:
    """Load the model, its banks, the photos' bank (``req.photos``) and the extractor, at ``req.threads`` torch
    threads; return the Starlette app (:func:`vsekit.serve.app.create_app`).

    Raises:
        VsekitError: missing web packages (``pip install 'vsekit[serve]'``), or any model, bank or photo problem.
    """
    require_web()
    import torch

    from vsekit.retrieval import Retriever
    from vsekit.serve.app import create_app
    from vsekit.serve.photos import photo_bank
    from vsekit.serve.uploads import Limits

    torch.set_num_threads(req.threads)
    r = Retriever.load(req.model, extractor=req.extractor, trust_code=req.trust_code)
    bank = photo_bank(r, req.model, req.photos, req.extractor, trust_code=req.trust_code) if req.photos else None
    limits = Limits(max_upload_bytes=int(req.max_upload_mb * 1024 * 1024))
    return create_app(r, images_dir=req.images_dir, image_bank=bank, limits=limits)


def serve(req: ServeRequest, ready: Callable[[str], None] = print) -> None:
    """Listen, build the app (:func:`build_app`), call ``ready(url)`` and serve until Ctrl-C or SIGTERM; requests
    that arrive while the model loads wait in the socket's queue.

    Raises:
        VsekitError: see :func:`build_app` and :func:`listen`.
    """
    require_web()
    sock = listen(req.host, req.port)  # first: a taken port fails before seconds of loading
    try:
        app = build_app(req)
    except BaseException:
        sock.close()
        raise
    import uvicorn

    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    ready(url_of(req.host, port))
    uvicorn.Server(config).run(sockets=[sock])
