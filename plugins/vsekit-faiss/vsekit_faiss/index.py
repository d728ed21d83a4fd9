"""faiss inner-product indexes over unit-norm embeddings, and their files beside a vsekit bank.

Four kinds, all scoring by inner product (= cosine, the rows being unit-norm):

* ``flat``: exact (``IndexFlatIP``), a brute-force scan; the reference answer.
* ``ivf``: IVF-Flat. Spherical k-means cuts the bank into ``nlist`` cells; a
  query scans the ``nprobe`` nearest cells. Parameters: ``nlist`` (default
  about sqrt(N)), ``nprobe`` (default 16), ``train_size`` (rows the k-means
  sees, default 64 per cell), ``seed``.
* ``hnsw``: a navigable small-world graph (``IndexHNSWFlat``). Parameters:
  ``m`` (links per node, default 32), ``ef_construction`` (default 80),
  ``ef_search`` (default 64).
* ``hnsw_sq8``: the same graph over 8-bit scalar-quantized rows
  (``IndexHNSWSQ``, QT_8bit: a quarter of the bytes read per visited node),
  wrapped in ``IndexRefineFlat``: the ``k_factor * k`` best candidates of the
  graph are re-ranked exactly against a float32 copy of the rows, so scores
  are exact. Parameters: those of ``hnsw``, ``k_factor`` (default 4) and
  ``train_size`` (rows the quantizer's per-dimension ranges are fit on,
  default min(N, 65536)), ``seed`` (of that sample, default 0).
  Same recall as ``hnsw`` at the same ``ef_search``, +0.5 GB, and on the
  benchmark's CPU no faster (scoring a code costs more than reading a float
  row there): see ``benchmarks/README.md`` before choosing it.

Approximate indexes trade recall for speed: measure recall@k against
``flat`` on your data before relying on them (``benchmarks/bench_faiss.py``).

Files: an index of bank ``NAME`` (``NAME.json`` + ``NAME.safetensors``) is
``NAME.KIND.faiss`` (faiss's own format) plus ``NAME.KIND.faiss.json`` (kind,
parameters, the index file's sha256, and the bank's count, dim and weights
checksum, so an index left over from another bank is refused), committed as
one change (:func:`vsekit.io.commit_parts`) and checked on load.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vsekit.errors import DataError, VsekitError
from vsekit.io import commit_parts, committed_part, sha256_file
from vsekit.limits import read_json

KINDS = ("flat", "ivf", "hnsw", "hnsw_sq8")
FORMAT = "vsekit-faiss-index/1"
NORM_TOLERANCE = 1e-2  # float16 banks are unit-norm to ~1e-3
PARAMS = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16, "train_size": None, "seed": 0},
    "hnsw": {"m": 32, "ef_construction": 80, "ef_search": 64},
    "hnsw_sq8": {"m": 32, "ef_construction": 80, "ef_search": 64, "k_factor": 4, "train_size": None, "seed": 0},
}
SEARCH_PARAMS = {"ivf": ("nprobe",), "hnsw": ("ef_search",), "hnsw_sq8": ("ef_search", "k_factor"), "flat": ()}
SQ8_TRAIN_SIZE = 65536
# flat batches of at least this many queries are scored with one BLAS GEMM per block of rows; faiss 1.15's
# own threshold (``distance_compute_blas_threshold``, 128000 queries) keeps batches on the per-query scan,
# 4-20x slower at 100 queries on a 100K-500K x 1024 bank. At 2-3 queries the two are about even.
FLAT_BLAS_MIN_QUERIES = 4
_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = 0


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a dependency of this package
        raise VsekitError("vsekit-faiss needs faiss: pip install faiss-cpu") from None
    return faiss


@contextlib.contextmanager
def _blas_for_batches(faiss: Any) -> Any:
    """Lower faiss's (process-wide) BLAS threshold for the duration; the last of concurrent users restores it."""
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = int(faiss.cvar.distance_compute_blas_threshold)
            faiss.cvar.distance_compute_blas_threshold = min(_blas_saved, FLAT_BLAS_MIN_QUERIES)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                faiss.cvar.distance_compute_blas_threshold = _blas_saved


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise VsekitError(f"unknown index kind {kind!r}: choose one of {', '.join(KINDS)}{hint}")
    return kind


def _as_matrix(x: Any, what: str) -> np.ndarray:
    """A C-contiguous float32 (N, d) array from a numpy array or a torch tensor (of any float dtype)."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x)
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


def _check_embeddings(emb: np.ndarray, check_norm: bool) -> None:
    if emb.ndim != 2:
        raise DataError(f"index: expected a 2-D (N, dim) embedding matrix, got shape {emb.shape}")
    if emb.shape[0] == 0:
        raise DataError("index: the bank is empty (0 embeddings): nothing to index")
    if emb.shape[1] == 0:
        raise DataError("index: embeddings of dimension 0")
    # blockwise, so a 500K x 1024 bank does not need a second full-size temporary
    for start in range(0, len(emb), 65536):
        block = emb[start : start + 65536]
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
            raise DataError(f"index: row {bad} holds NaN or infinity")
        if check_norm:
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            off = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOLERANCE)
            if len(off):
                i = start + int(off[0])
                raise DataError(f"index: row {i} has norm {norms[off[0]]:.4f}, not 1: inner-product indexes rank by "
                                f"cosine only for unit-norm rows (normalize them, or pass check_norm=False)")


class FaissIndex:
    """A faiss index with its kind, build parameters, dimension and row count."""

    def __init__(self, index: Any, kind: str, params: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.index = index
        self.kind = check_kind(kind)
        self.params = dict(params)
        self.meta: dict[str, Any] = dict(meta or {})
        self.path: Path | None = None
        self.set_search_params(**{k: v for k, v in self.params.items() if k in SEARCH_PARAMS[kind]})

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items() if v is not None)
        return f"FaissIndex({self.kind}, {len(self)} x {self.dim}{', ' + shown if shown else ''})"

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None,
                          k_factor: float | None = None) -> None:
        """Change the speed/recall trade-off of an approximate index without rebuilding it."""
        if nprobe is not None:
            if self.kind != "ivf":
                raise VsekitError(f"nprobe applies to ivf indexes, not {self.kind}")
            if nprobe < 1:
                raise VsekitError(f"nprobe must be >= 1, got {nprobe}")
            self.index.nprobe = int(min(nprobe, self.index.nlist))
            self.params["nprobe"] = int(nprobe)
        if ef_search is not None:
            if self.kind not in ("hnsw", "hnsw_sq8"):
                raise VsekitError(f"ef_search applies to hnsw and hnsw_sq8 indexes, not {self.kind}")
            if ef_search < 1:
                raise VsekitError(f"ef_search must be >= 1, got {ef_search}")
            self._graph().hnsw.efSearch = int(ef_search)
            self.params["ef_search"] = int(ef_search)
        if k_factor is not None:
            if self.kind != "hnsw_sq8":
                raise VsekitError(f"k_factor applies to hnsw_sq8 indexes, not {self.kind}")
            if not k_factor >= 1:
                raise VsekitError(f"k_factor must be >= 1, got {k_factor}")
            self.index.k_factor = float(k_factor)
            self.params["k_factor"] = k_factor

    def _graph(self) -> Any:
        """The faiss HNSW index (for hnsw_sq8: the graph under the exact re-ranking)."""
        if self.kind == "hnsw_sq8":
            return _faiss().downcast_index(self.index.base_index)
        return self.index

    def search(self, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row indices of the ``k`` best rows, best first.

        ``queries`` (dim,) gives 1-D arrays; (Q, dim) gives (Q, k') arrays,
        ``k' = min(k, len(index))``. An approximate index may find fewer than
        ``k'`` rows for a query; the missing places hold index -1 and score -inf.
        """
        if k < 1:
            raise VsekitError(f"k must be >= 1, got {k}")
        q = _as_matrix(queries, "query")
        single = q.ndim == 1
        if single:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"query: the index has dim {self.dim}, but the query has shape {tuple(np.shape(queries))}"
                            f" (expected ({self.dim},) or (Q, {self.dim}))")
        if not np.isfinite(q).all():
            raise DataError("query: holds NaN or infinity")
        if self.kind == "flat" and len(q) >= FLAT_BLAS_MIN_QUERIES:
            with _blas_for_batches(_faiss()):
                scores, ids = self.index.search(q, min(k, len(self)))
        else:
            scores, ids = self.index.search(q, min(k, len(self)))
        scores[ids < 0] = -np.inf
        return (scores[0], ids[0]) if single else (scores, ids)

    # -- files ---------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the faiss file at ``path`` and its JSON description (with its sha256) at ``path.json``, as one
        change (:func:`vsekit.io.commit_parts`)."""
        faiss = _faiss()
        path = Path(path)
        meta = {"format": FORMAT, "kind": self.kind, "params": self.params, "dim": self.dim, "count": len(self),
                "faiss_version": faiss.__version__, "index_sha256": None,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                **{k: v for k, v in self.meta.items() if k not in ("format", "kind", "params", "dim", "count")}}
        commit_parts(meta_path(path), {path: lambda tmp: faiss.write_index(self.index, tmp)},
                     lambda digests: json.dumps({**meta, "index_sha256": digests[path]}, indent=1))
        self.path = path
        return path


def meta_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".json")


def default_nlist(n: int) -> int:
    """About sqrt(N) cells, and at least 39 training rows per cell (faiss's minimum)."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def build_index(embeddings: Any, kind: str = "flat", *, check_norm: bool = True, verbose: bool = False,
                **params: Any) -> FaissIndex:
    """Index the unit-norm rows of ``embeddings`` (N, dim) (numpy or torch, float16/32) for inner-product search.

    ``kind`` is ``"flat"`` (exact), ``"ivf"``, ``"hnsw"`` or ``"hnsw_sq8"``; ``params`` are the
    kind's parameters (see the module docstring). Rows must be unit-norm
    (within 1e-2) unless ``check_norm=False``.
    """
    faiss = _faiss()
    check_kind(kind)
    unknown = sorted(set(params) - set(PARAMS[kind]))
    if unknown:
        raise VsekitError(f"{kind} index: unknown parameter(s) {', '.join(unknown)}; "
                          f"{kind} takes {', '.join(PARAMS[kind]) or 'none'}")
    p = {**PARAMS[kind], **{k: v for k, v in params.items() if v is not None}}
    emb = _as_matrix(embeddings, "bank")
    _check_embeddings(emb, check_norm)
    n, d = emb.shape
    t0 = time.perf_counter()
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(emb)
    elif kind == "ivf":
        nlist = int(p["nlist"] or default_nlist(n))
        if not 1 <= nlist <= n:
            raise DataError(f"ivf index: nlist must be between 1 and the number of rows ({n}), got {nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the sphere: the cells of a cosine space
        index.cp.seed = int(p["seed"])
        train_size = int(p["train_size"] or min(n, 64 * nlist))
        if train_size < nlist:
            raise DataError(f"ivf index: train_size ({train_size}) must be at least nlist ({nlist})")
        rows = emb if train_size >= n else \
            emb[np.sort(np.random.default_rng(int(p["seed"])).choice(n, train_size, replace=False))]
        index.train(rows)
        index.add(emb)
        p.update(nlist=nlist, train_size=train_size)
    else:
        m = int(p["m"])
        if m < 2:
            raise VsekitError(f"{kind} index: m must be >= 2, got {m}")
        if int(p["ef_construction"]) < 1:
            raise VsekitError(f"{kind} index: ef_construction must be >= 1, got {p['ef_construction']}")
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = int(p["ef_construction"])
        else:
            if not float(p["k_factor"]) >= 1:
                raise VsekitError(f"hnsw_sq8 index: k_factor must be >= 1, got {p['k_factor']}")
            train_size = int(p["train_size"] or min(n, SQ8_TRAIN_SIZE))
            if train_size < 1:
                raise DataError(f"hnsw_sq8 index: train_size must be >= 1, got {train_size}")
            train_size = min(train_size, n)
            graph = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = int(p["ef_construction"])
            index = faiss.IndexRefineFlat(graph)  # keeps a reference to graph (faiss's Python wrapper)
            rows = emb if train_size >= n else \
                emb[np.sort(np.random.default_rng(int(p["seed"])).choice(n, train_size, replace=False))]
            index.train(rows)  # the quantizer's per-dimension ranges
            p.update(train_size=train_size)
        index.add(emb)
    seconds = time.perf_counter() - t0
    out = FaissIndex(index, kind, p, {"build_seconds": seconds})
    if verbose:
        print(f"built {out} in {seconds:.1f} s")
    return out


def search(index: FaissIndex, queries: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k)``: (scores, row indices), best first."""
    return index.search(queries, k)


def save(index: FaissIndex, path: str | Path) -> Path:
    """Write ``index`` to ``path`` (+ ``path.json``), atomically."""
    return index.save(path)


def load(path: str | Path, *, mmap: bool = False) -> FaissIndex:
    """Read an index written by :func:`save`; ``mmap`` maps a flat/IVF index's data instead of reading it."""
    faiss = _faiss()
    path = Path(path)
    mpath = meta_path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such index file (build one with `vsekit index build BANK --kind KIND`)")
    try:
        meta = read_json(mpath, what="index description")  # size and nesting bounded (vsekit.limits)
    except OSError as exc:
        raise DataError(f"{mpath}: cannot read the index description: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise DataError(f"{mpath}: not a vsekit-faiss index description (expected format {FORMAT!r})")
    sha = meta.get("index_sha256")  # every saved index records it; a description written by hand may not
    found = committed_part(path, sha) if isinstance(sha, str) else path
    if found is None:
        raise DataError(f"{path}: checksum mismatch: not the index {mpath} was written with: rebuild the index")
    try:
        flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else 0
        raw = faiss.read_index(str(found), flags)
    except RuntimeError as exc:
        raise DataError(f"{path}: cannot read the faiss index: {str(exc).strip().splitlines()[-1]}") from None
    if raw.d != meta.get("dim") or raw.ntotal != meta.get("count"):
        raise DataError(f"{path}: holds {raw.ntotal} x {raw.d}, but {mpath.name} says "
                        f"{meta.get('count')} x {meta.get('dim')}: rebuild the index")
    rest = {k: v for k, v in meta.items() if k not in ("format", "kind", "params", "dim", "count")}
    out = FaissIndex(raw, meta["kind"], meta.get("params") or {}, rest)
    out.path = path
    return out


# --------------------------------------------------------------------------
# indexes of banks


def bank_index_path(bank_path: str | Path, kind: str) -> Path:
    """``NAME.KIND.faiss`` beside the bank ``NAME`` (given as ``NAME``, ``NAME.json`` or ``NAME.safetensors``)."""
    from vsekit.retrieval import bank_files

    meta, _ = bank_files(bank_path)
    return meta.with_name(f"{meta.name[: -len('.json')]}.{check_kind(kind)}.faiss")


def _bank_identity(bank: Any) -> dict[str, Any]:
    """Count, dim and the checksum of the bank's embeddings file (from its JSON, else hashed; None if unsaved)."""
    sha = bank.meta.get("weights_sha256")
    if sha is None and bank.path is not None:
        from vsekit.retrieval import bank_files

        weights = bank_files(bank.path)[1]
        sha = sha256_file(weights) if weights.is_file() else None
    return {"bank_count": len(bank), "bank_dim": bank.dim, "bank_weights_sha256": sha}


class BankIndex:
    """A :class:`vsekit.retrieval.Bank` with a faiss index over its rows; :meth:`search` returns the bank's hits.

    ::

        bank = vsekit.retrieval.load_bank("captions")
        bi = BankIndex.build(bank, "ivf", nprobe=32)
        bi.save()                                  # captions.ivf.faiss (+ .json) beside captions.json
        bi = BankIndex.load(bank, "ivf")
        hits = bi.search(query_vector, k=5)        # [Hit(rank, score, index, id, text), ...]
    """

    def __init__(self, bank: Any, index: FaissIndex) -> None:
        if index.dim != bank.dim or len(index) != len(bank):
            raise DataError(f"index of {len(index)} x {index.dim} does not fit the bank of {len(bank)} x {bank.dim}")
        self.bank = bank
        self.index = index

    def __repr__(self) -> str:
        return f"BankIndex({self.bank!r}, {self.index!r})"

    @classmethod
    def build(cls, bank: Any, kind: str = "flat", **params: Any) -> BankIndex:
        if len(bank) == 0:
            where = bank.path or f"the {bank.kind} bank"
            raise DataError(f"{where} is empty: nothing to index (build it with `vsekit bank`)")
        index = build_index(bank.embeddings, kind, **params)
        index.meta.update(_bank_identity(bank))
        return cls(bank, index)

    def search(self, query: Any, k: int = 5) -> list[Any]:
        """Like ``Bank.search``: hits for a query (dim,), or one list of hits per query row of (Q, dim)."""
        scores, ids = self.index.search(query, k)
        if scores.ndim == 1:
            return self._hits(scores, ids)
        return [self._hits(s, i) for s, i in zip(scores, ids, strict=True)]

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[Any]:
        keep = ids >= 0  # faiss pads with -1 when fewer than k rows were reached
        return self.bank.hits(scores[keep].tolist(), ids[keep].tolist())

    def save(self, path: str | Path | None = None) -> Path:
        """Write the index beside the bank (``NAME.KIND.faiss``), or at ``path``."""
        if path is None:
            if self.bank.path is None:
                raise VsekitError("this bank was never saved: save it first, or give the index a path")
            path = bank_index_path(self.bank.path, self.index.kind)
        return self.index.save(path)

    @classmethod
    def load(cls, bank: Any, kind: str = "flat", path: str | Path | None = None, *, mmap: bool = False) -> BankIndex:
        """Read the ``kind`` index beside ``bank`` (or at ``path``); refuse one built from other embeddings."""
        if path is None:
            if bank.path is None:
                raise VsekitError("this bank has no file: give the index path")
            path = bank_index_path(bank.path, kind)
        index = load(path, mmap=mmap)
        want = _bank_identity(bank)
        got = {k: index.meta.get(k) for k in want}
        if got != want:
            diffs = ", ".join(f"{k}: index {got[k]!r} vs bank {want[k]!r}" for k in want if got[k] != want[k])
            raise DataError(f"{path}: built from other embeddings than {bank.path or 'this bank'} ({diffs}): "
                            f"rebuild it with `vsekit index build`")
        return cls(bank, index)


def available(bank_path: str | Path) -> list[Path]:
    """Index files beside a bank."""
    return [p for kind in KINDS if (p := bank_index_path(bank_path, kind)).is_file()]


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int | None = None) -> float:
    """Mean fraction of each query's true top-k rows that the approximate top-k holds."""
    k = k or truth.shape[1]
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)
