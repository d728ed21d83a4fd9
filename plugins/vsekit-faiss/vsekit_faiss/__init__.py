"""vsekit-faiss: exact and approximate faiss inner-product indexes over vsekit embedding banks.

::

    from vsekit_faiss import build_index, search, save, load, BankIndex

    index = build_index(embeddings, kind="ivf", nprobe=32)   # "flat" (exact) | "ivf" | "hnsw" | "hnsw_sq8"
    scores, rows = search(index, queries, k=10)
    save(index, "captions.ivf.faiss"); index = load("captions.ivf.faiss")

    bi = BankIndex.build(vsekit.retrieval.load_bank("captions"), "hnsw")   # hits like Bank.search
    bi.save()                                                            # beside the bank

The ``vsekit`` entry point names this module, so every ``vsekit`` command
imports it: it stays tiny, and faiss is imported only when an index is used.
It adds the ``vsekit index`` command group (build, search, info).
"""

from __future__ import annotations

from typing import Any

from vsekit import hookimpl

__version__ = "0.1.0"

_API = ("BankIndex", "FaissIndex", "KINDS", "available", "bank_index_path", "build_index", "load", "recall_at_k",
        "save", "search")
__all__ = list(_API)


def __getattr__(name: str) -> Any:  # lazy: `import vsekit_faiss` must not import faiss
    if name in _API:
        from vsekit_faiss import index

        return getattr(index, name)
    raise AttributeError(f"module 'vsekit_faiss' has no attribute {name!r}")


@hookimpl
def register_commands(cli):
    from vsekit_faiss.cli import index_group

    cli.add_command(index_group)
