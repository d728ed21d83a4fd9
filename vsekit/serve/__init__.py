"""``vsekit serve``: a local web app and JSON API over one loaded :class:`~vsekit.retrieval.Retriever`.

The model, its banks and its image feature extractor are loaded once; every
query runs on one inference thread, in arrival order, at the configured torch
threads (one by default: on a small shared machine two threads were 40x slower
than one under load).
The package, one concept a module: :mod:`~vsekit.serve.app` (the Starlette app
factory and its endpoints), :mod:`~vsekit.serve.uploads` (bounded request
bodies, image uploads, form fields and their 4xx errors),
:mod:`~vsekit.serve.photos` (the cached image bank of the user's own photos),
:mod:`~vsekit.serve.server` (start-up: load, listen, run uvicorn) and
``static/`` (the page, its script and style).

Starlette, uvicorn and python-multipart are the optional extra ``vsekit[serve]``;
this module imports none of them, so :func:`require_web` can say what to install.
"""

from __future__ import annotations

import importlib.util

from vsekit.errors import VsekitError

#: the distributions ``vsekit serve`` needs, each with the module names it may be imported as
WEB_MODULES = {"starlette": ("starlette",), "uvicorn": ("uvicorn",),
               "python-multipart": ("python_multipart", "multipart"), "pillow": ("PIL",)}


def require_web() -> None:
    """Check that the web server's packages are importable (without importing them).

    Raises:
        VsekitError: one line naming the missing packages and ``pip install 'vsekit[serve]'``.
    """
    missing = [dist for dist, mods in WEB_MODULES.items()
               if all(importlib.util.find_spec(m) is None for m in mods)]
    if missing:
        raise VsekitError(f"vsekit serve needs {', '.join(missing)}, not installed: "
                          f"pip install 'vsekit[serve]'")
