"""faiss indexes (vsekit-faiss) on a large caption bank: build time, memory, query latency, recall@10 vs exact.

    python benchmarks/bench_faiss.py [--n 500000] [--model runs/flickr8k_seeds/seed0/best.json] [--cache F.npz]
                                     [--kinds flat ivf [hnsw] [hnsw_sq8]] [--nlist 1024] [--nprobe 8 16 ...]
                                     [--ef-search 32 64 ...] [--k-factor 4 8]
                                     [--threads 1 2] [--out benchmarks/results/faiss_500k.json]

The bank: a clustered mixture around real caption embeddings (Flickr8K has
40K captions, too few for 500K rows). The Flickr8K train + dev captions
(35K, 5 per image) are encoded by a trained model (``--model``; by default
``runs/flickr8k_seeds/seed0/best.json``); each of the ``--n`` bank rows is a
random one of them (its seed) plus Gaussian noise, renormalized. The noise
has the covariance of the real within-image residuals (a caption minus the
mean of its image's 5 captions: how captions of one image differ), and its
scale is calibrated so that a row's median cosine to its seed equals the
real median cosine between two captions of the same image (about 0.59): each
row is as far from its seed as a paraphrase is. ``--noise-shape isotropic``
and ``--noise S`` override this. Queries are Flickr8K *test* captions encoded
by the same model: real captions of images whose captions seed no bank row.
Without a model (``--model none``) the centres are synthetic (two levels of
random clusters) and the queries are perturbed centres; the JSON says which.
Uniform random vectors would defeat any index and say nothing about real banks.

Per index: build seconds (``--build-threads``), RSS growth, serialized size
(bytes), save/load seconds; then at each ``--threads``: single-query latency
(``--single`` queries one at a time: median, p95, and median in process CPU
time, which a loaded shared machine distorts less), batched latency (the
median over ``--batches`` batches of ``--batch-size`` queries), and recall@k
against the exact ``flat`` index on the same bank (over ``--queries``
queries, computed once) for each ``nprobe`` (ivf) / ``ef_search`` (hnsw; hnsw_sq8: each ``ef_search``
at each ``k_factor``, the cheapest being the fastest in batches).
``exact_torch`` is vsekit's own bank search (``Bank.search``: ``bank @ q``
and ``torch.topk``). The chosen setting is the cheapest with recall@k >=
``--target-recall``; the 10x target is judged against the faster of the two
exact searches, separately for single queries and for batches.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import F8K_FEATURES, REPO, machine, write

DEFAULT_MODEL = REPO / "runs" / "flickr8k_seeds" / "seed0" / "best.json"
SWEEPS: dict[str, list[dict[str, Any]]] = {}  # kind -> the search settings to measure (set from the flags)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unit_rows_(x: np.ndarray, block: int = 65536) -> np.ndarray:
    for s in range(0, len(x), block):
        b = x[s : s + block]
        b /= np.linalg.norm(b, axis=1, keepdims=True)
    return x


def centres_and_queries(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(centres, queries, description): real caption embeddings when a model is available, else synthetic."""
    model_path = None if args.model == "none" else Path(args.model) if args.model else \
        (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
    rng = np.random.default_rng(args.seed)
    if model_path is not None:
        import torch

        import vsekit
        from vsekit.data.readers import PrecompReader

        torch.set_num_threads(max(args.threads))
        model = vsekit.load_model(model_path)
        if model.dim != args.dim:
            raise SystemExit(f"{model_path}: a dim-{model.dim} model, but --dim {args.dim}")
        from vsekit.io import sha256_file

        weights = model_path.with_suffix(".safetensors")
        wsha = sha256_file(weights) if weights.is_file() else None
        t0 = time.perf_counter()
        cache = Path(args.cache) if args.cache else None
        cached = np.load(cache) if cache is not None and cache.is_file() else None
        if cached is not None and str(cached["weights_sha256"]) == str(wsha):
            centres, queries = cached["centres"], cached["queries"]
        else:
            reader = PrecompReader(PrecompReader.Config(dir=str(args.data)))
            caps = reader.read("train").captions + reader.read("dev").captions
            test = reader.read("test").captions
            centres = _np32(vsekit.encode_sentences(model, caps))
            queries = _np32(vsekit.encode_sentences(model, test))
            if cache is not None:
                np.savez(cache, centres=centres, queries=queries, weights_sha256=np.array(str(wsha)))
        desc = {"source": "real caption embeddings", "model": str(model_path), "model_weights_sha256": wsha,
                "centres": f"{len(centres)} Flickr8K train+dev captions (5 per image, in image order)",
                "queries": "Flickr8K test captions (images and captions the bank's seeds do not hold)",
                "encode_seconds": time.perf_counter() - t0, "encode_cached": cached is not None}
        if len(queries) > args.queries:
            queries = queries[np.sort(rng.choice(len(queries), args.queries, replace=False))]
        return _np32(centres), _np32(queries), desc
    k, topics = 40000, 1000  # caption-like centres grouped under topics: two levels of clusters
    tops = unit_rows_(rng.standard_normal((topics, args.dim), dtype=np.float32))
    centres = unit_rows_(tops[rng.integers(topics, size=k)] +
                         0.7 * rng.standard_normal((k, args.dim), dtype=np.float32) / np.sqrt(args.dim))
    picks = rng.integers(k, size=args.queries)
    noise = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    queries = unit_rows_(centres[picks] + (args.noise or 0.5) * noise / np.sqrt(args.dim))
    return centres, queries, {"source": f"synthetic: {k} random centres around {topics} random topic directions",
                              "centres": f"{k} synthetic centres", "queries": "fresh perturbations of centres"}


def _np32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def noise_factor(centres: np.ndarray, shape: str, caps_per_image: int = 5) -> tuple[np.ndarray, dict[str, Any]]:
    """A (d, d) matrix F such that ``z @ F`` (z standard normal) has unit expected squared norm, and stats.

    ``within-image``: F = sqrt(Lambda) V^T / sqrt(trace), from the covariance of the within-image
    residuals of the real captions (caption minus the mean of its image's captions, scaled by
    c/(c-1) to undo the shrinkage of a mean over c captions): noise shaped like the way
    captions of one image differ. ``isotropic``: F = I / sqrt(d).
    """
    n, d = centres.shape
    stats: dict[str, Any] = {}
    usable = n // caps_per_image * caps_per_image
    g = centres[:usable].reshape(-1, caps_per_image, d).astype(np.float64)
    sib = np.einsum("nid,njd->nij", g, g)[:, *np.triu_indices(caps_per_image, 1)]
    stats["real_sibling_cosine_median"] = float(np.median(sib))
    res = (g - g.mean(1, keepdims=True)).reshape(-1, d) * np.sqrt(caps_per_image / (caps_per_image - 1))
    stats["real_residual_norm_median"] = float(np.median(np.linalg.norm(res, axis=1)))
    if shape == "isotropic":
        return np.eye(d, dtype=np.float32) / np.float32(np.sqrt(d)), stats
    cov = res.T @ res / len(res)
    lam, vec = np.linalg.eigh(cov)
    lam = np.clip(lam, 0, None)
    stats["residual_participation_ratio"] = float(lam.sum() ** 2 / (lam**2).sum())
    f = (np.sqrt(lam)[:, None] * vec.T) / np.sqrt(lam.sum())
    return f.astype(np.float32), stats


def perturb(centres: np.ndarray, idx: np.ndarray, factor: np.ndarray, noise: float,
            rng: np.random.Generator) -> np.ndarray:
    out = rng.standard_normal((len(idx), centres.shape[1]), dtype=np.float32) @ factor
    out *= np.float32(noise)
    out += centres[idx]
    return unit_rows_(out)


def calibrate_noise(centres: np.ndarray, factor: np.ndarray, target_cos: float, seed: int) -> float:
    """The noise scale at which a perturbed row's median cosine to its seed is ``target_cos`` (bisection)."""
    rng = np.random.default_rng(seed + 7)
    idx = rng.integers(len(centres), size=4000)
    z = rng.standard_normal((len(idx), centres.shape[1]), dtype=np.float32) @ factor
    lo, hi = 0.0, 8.0
    for _ in range(40):
        mid = (lo + hi) / 2
        rows = centres[idx] + np.float32(mid) * z
        cos = np.einsum("ij,ij->i", rows, centres[idx]) / np.linalg.norm(rows, axis=1)
        lo, hi = (mid, hi) if np.median(cos) > target_cos else (lo, mid)
    return (lo + hi) / 2


def make_bank(centres: np.ndarray, n: int, noise: float, factor: np.ndarray, seed: int) -> np.ndarray:
    """``n`` unit rows: a random real centre each, plus Gaussian noise ``noise * z @ factor``, renormalized."""
    rng = np.random.default_rng(seed + 1)
    d = centres.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 32768):
        m = min(32768, n - s)
        out[s : s + m] = perturb(centres, rng.integers(len(centres), size=m), factor, noise, rng)
    return out


def time_single(fn: Any, queries: np.ndarray) -> dict[str, float]:
    """Latency of one query at a time: wall median / p95 / mean, and the median in process CPU time."""
    ts, cs = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(q)
        ts.append(1e3 * (time.perf_counter() - t0))
        cs.append(1e3 * (time.process_time() - c0))
    ts.sort()
    return {"median_ms": statistics.median(ts), "p95_ms": ts[int(0.95 * (len(ts) - 1))], "mean_ms": sum(ts) / len(ts),
            "cpu_median_ms": statistics.median(cs)}


def time_batched(fn: Any, queries: np.ndarray, batch_size: int, batches: int) -> dict[str, Any]:
    """Latency of batches of ``batch_size`` queries (``batches`` different batches): median per batch and per query."""
    ts, cs = [], []
    for b in range(batches):
        chunk = queries[(b * batch_size) % len(queries):][:batch_size]
        t0, c0 = time.perf_counter(), time.process_time()
        fn(chunk)
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    med = statistics.median(ts)
    return {"batch_size": batch_size, "batch_median_ms": 1e3 * med, "per_query_ms": 1e3 * med / batch_size,
            "runs_ms": [1e3 * t for t in ts], "cpu_per_query_ms": 1e3 * statistics.median(cs) / batch_size}


def time_exact_torch(bank: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """vsekit's own exact search: ``Bank.search`` (``bank @ q``, ``torch.topk``) on the same rows."""
    import torch

    from vsekit.retrieval import ImageBank

    tb = ImageBank(torch.from_numpy(bank), None)  # type: ignore[arg-type]
    return {"single": time_single(lambda q: tb.search(q, args.k), queries[: args.single]),
            "batched": time_batched(lambda q: tb.search(q, args.k), queries, args.batch_size, args.batches)}


def build_and_store(kind: str, bank: np.ndarray, args: argparse.Namespace,
                    params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Build the index (timed, with its RSS growth), then a save/load round trip (timed, file size)."""
    from vsekit_faiss import build_index, load, save

    gc.collect()
    rss0 = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    index = build_index(bank, kind, **params)
    build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    rss1 = rss_mb()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / f"bank.{kind}.faiss"
        t0 = time.perf_counter()
        save(index, path)
        save_s = time.perf_counter() - t0
        size_bytes = path.stat().st_size
        size_mb = size_bytes / 2**20
        t0 = time.perf_counter()
        loaded = load(path)
        load_s = time.perf_counter() - t0
        del loaded
    gc.collect()
    info = {"kind": kind, "params": dict(index.params), "build_s": build_s, "build_cpu_s": build_cpu_s,
            "build_threads": args.build_threads, "rss_growth_build_mb": rss1 - rss0, "index_bytes": size_bytes,
            "index_file_mb": size_mb,
            "save_s": save_s, "load_s": load_s}
    print(f"  built {index!r} in {build_s:.1f} s (CPU {build_cpu_s:.1f} s), +{rss1 - rss0:.0f} MiB RSS, "
          f"file {size_mb:.0f} MiB, save {save_s:.1f} s, load {load_s:.1f} s", flush=True)
    return info, index


_RECALL: dict[Any, float] = {}


def sweep(kind: str, index: Any, queries: np.ndarray, truth: np.ndarray | None,
          args: argparse.Namespace) -> list[dict[str, Any]]:
    """Latency and recall@k for each nprobe / ef_search of the sweep (the one setting of flat)."""
    from vsekit_faiss import recall_at_k

    rows = []
    for setting in SWEEPS.get(kind, [{}]):
        if setting:
            index.set_search_params(**setting)
        row: dict[str, Any] = dict(setting)
        row["single"] = time_single(lambda q: index.search(q, args.k), queries[: args.single])
        row["batched"] = time_batched(lambda q: index.search(q, args.k), queries, args.batch_size, args.batches)
        key = (kind, index.params.get("nlist"), tuple(sorted(setting.items())))
        if key not in _RECALL:  # the same at every thread count: computed once
            _RECALL[key] = 1.0 if truth is None else recall_at_k(index.search(queries, args.k)[1], truth, args.k)
        row["recall_at_k"] = _RECALL[key]
        rows.append(row)
        shown = " ".join(f"{k}={v}" for k, v in setting.items())
        print(f"  {kind:<8} {shown:<24} recall@{args.k} {row['recall_at_k']:.4f}  "
              f"single {row['single']['median_ms']:8.3f} ms (CPU {row['single']['cpu_median_ms']:8.3f})  "
              f"batched {row['batched']['per_query_ms']:8.4f} ms/query", flush=True)
    return rows


def choose(settings: list[dict[str, Any]], flat: dict[str, Any], torch_exact: dict[str, Any],
           target: float, by_speed: bool = False) -> dict[str, Any]:
    """The cheapest setting with recall >= target, and its speed-ups over exact search.

    Cheapest: the first (smallest nprobe / ef_search), or with ``by_speed`` (a sweep over two parameters)
    the one with the fastest batched latency.
    """
    ok = [s for s in settings if s["recall_at_k"] >= target]
    if ok and by_speed:
        ok.sort(key=lambda s: s["batched"]["per_query_ms"])
    best = ok[0] if ok else max(settings, key=lambda s: s["recall_at_k"])
    c = {"setting": {k: v for k, v in best.items() if k in ("nprobe", "ef_search", "k_factor")},
         "recall_at_k": best["recall_at_k"], "meets_target_recall": bool(ok),
         "single_median_ms": best["single"]["median_ms"], "batched_per_query_ms": best["batched"]["per_query_ms"],
         "speedup_single_vs_flat": flat["single"]["median_ms"] / best["single"]["median_ms"],
         "speedup_single_vs_flat_cpu_time": flat["single"]["cpu_median_ms"] / best["single"]["cpu_median_ms"],
         "speedup_batched_vs_flat": flat["batched"]["per_query_ms"] / best["batched"]["per_query_ms"],
         "speedup_single_vs_exact_torch": torch_exact["single"]["median_ms"] / best["single"]["median_ms"],
         "speedup_batched_vs_exact_torch": torch_exact["batched"]["per_query_ms"] / best["batched"]["per_query_ms"]}
    # the target is judged against the faster exact search (faiss flat or torch Bank.search) in each mode
    c["speedup_single_vs_best_exact"] = min(c["speedup_single_vs_flat"], c["speedup_single_vs_exact_torch"])
    c["speedup_batched_vs_best_exact"] = min(c["speedup_batched_vs_flat"], c["speedup_batched_vs_exact_torch"])
    c["meets_target_single"] = bool(ok) and c["speedup_single_vs_best_exact"] >= 10
    c["meets_target_batched"] = bool(ok) and c["speedup_batched_vs_best_exact"] >= 10
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500_000, help="bank rows")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--model", default=None, help="checkpoint .json whose caption embeddings centre the bank "
                    "(default: runs/flickr8k_seeds/seed0/best.json if present); 'none' for synthetic centres")
    ap.add_argument("--data", type=Path, default=F8K_FEATURES)
    ap.add_argument("--cache", default=None, help="an .npz to keep the encoded captions in (reused if the model "
                    "weights match)")
    ap.add_argument("--noise-shape", choices=["within-image", "isotropic"], default="within-image",
                    help="real centres: noise with the covariance of the captions of one image, or isotropic")
    ap.add_argument("--noise", type=float, default=None, help="noise scale (default: calibrated so a row's median "
                    "cosine to its seed caption equals the real median cosine between two captions of one image)")
    ap.add_argument("--kinds", nargs="+", choices=["flat", "ivf", "hnsw", "hnsw_sq8"], default=["flat", "ivf"])
    ap.add_argument("--queries", type=int, default=1000, help="queries for recall")
    ap.add_argument("--single", type=int, default=200, help="of which, timed one at a time")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--batches", type=int, default=5, help="batches timed (different queries each)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="faiss/torch threads for the queries (a list measures each)")
    ap.add_argument("--build-threads", type=int, default=min(2, os.cpu_count() or 1), help="faiss threads for builds")
    ap.add_argument("--nlist", type=int, nargs="+", default=[None],
                    help="ivf cells (default: vsekit-faiss's, about sqrt(N)); a list builds one index each")
    ap.add_argument("--train-size", type=int, default=None, help="ivf k-means rows (default: vsekit-faiss's)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128])
    ap.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--k-factor", type=float, nargs="+", default=[4, 8],
                    help="hnsw_sq8: candidates re-ranked exactly, as a multiple of k (a list sweeps each)")
    ap.add_argument("--sq-train-size", type=int, default=None, help="hnsw_sq8: quantizer training rows "
                    "(default: vsekit-faiss's)")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="folder for the save/load round trip (default: the system's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    SWEEPS["ivf"] = [{"nprobe": v} for v in args.nprobe]
    SWEEPS["hnsw"] = [{"ef_search": v} for v in args.ef_search]
    SWEEPS["hnsw_sq8"] = [{"ef_search": v, "k_factor": kf} for kf in args.k_factor for v in args.ef_search]

    import faiss
    import torch

    t_start = time.perf_counter()
    t0 = time.perf_counter()
    centres, queries, desc = centres_and_queries(args)
    real = desc["source"] == "real caption embeddings"
    shape = args.noise_shape if real else "isotropic"
    factor, nstats = noise_factor(centres, shape) if real else (np.eye(args.dim, dtype=np.float32) /
                                                                np.float32(np.sqrt(args.dim)), {})
    if args.noise is not None:
        noise = args.noise
    elif real:
        noise = calibrate_noise(centres, factor, nstats["real_sibling_cosine_median"], args.seed)
    else:
        noise = 0.5
    bank = make_bank(centres, args.n, noise, factor, args.seed)
    rng = np.random.default_rng(args.seed + 3)
    probe = rng.choice(args.n, 4000, replace=False)
    # each bank row's seed is not stored; re-derive the cosine to the seed on a fresh sample instead
    idx = rng.integers(len(centres), size=4000)
    sample = perturb(centres, idx, factor, noise, rng)
    nn = np.partition(bank[probe[:200]] @ bank.T, -2, axis=1)[:, -2]  # nearest other row
    desc.update(n=args.n, dim=args.dim, noise_shape=shape, noise_scale=noise, **nstats,
                synthetic_row_to_seed_cosine_median=float(np.median(np.einsum("ij,ij->i", sample, centres[idx]))),
                bank_row_nearest_other_row_cosine_median=float(np.median(nn)),
                rows_per_seed=args.n / len(centres), data_seconds=time.perf_counter() - t0)
    del sample, nn
    print(f"bank {bank.shape} from {desc['source']} ({desc['centres']}); noise {shape} x {noise:.3f}; "
          f"{len(queries)} queries; data {time.perf_counter() - t0:.1f} s; RSS {rss_mb():.0f} MiB", flush=True)
    print(f"  {json.dumps({k: v for k, v in desc.items() if isinstance(v, float)})}", flush=True)

    per_threads: dict[str, Any] = {str(t): {} for t in args.threads}
    for threads in args.threads:  # vsekit's own exact search (torch), the baseline
        torch.set_num_threads(threads)
        r = per_threads[str(threads)]["exact_torch"] = time_exact_torch(bank, queries, args)
        print(f"[{threads} thread(s)] torch exact (Bank.search): single {r['single']['median_ms']:.3f} ms "
              f"(CPU {r['single']['cpu_median_ms']:.3f}), batched {r['batched']['per_query_ms']:.4f} ms/query",
              flush=True)
    builds: dict[str, Any] = {}
    truth = None
    plan = [("flat", "flat", {})]
    for kind in args.kinds:
        if kind == "ivf":
            for nl in args.nlist:
                name = "ivf" if len(args.nlist) == 1 else f"ivf_nlist{nl}"
                plan.append((name, "ivf", {"nlist": nl, "train_size": args.train_size}))
        elif kind == "hnsw":
            plan.append(("hnsw", "hnsw", {"m": args.hnsw_m, "ef_construction": args.ef_construction}))
        elif kind == "hnsw_sq8":
            plan.append(("hnsw_sq8", "hnsw_sq8", {"m": args.hnsw_m, "ef_construction": args.ef_construction,
                                                  "k_factor": args.k_factor[0], "train_size": args.sq_train_size}))
    for name, kind, params in plan:  # flat first: it gives the ground truth
        faiss.omp_set_num_threads(args.build_threads)
        builds[name], index = build_and_store(kind, bank, args, params)
        if kind == "flat":
            top, truth = index.search(queries, args.k)
            desc["query_score_median_top1_top10"] = [float(np.median(top[:, 0])), float(np.median(top[:, -1]))]
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            print(f"[{threads} thread(s)] {name}")
            per_threads[str(threads)][name] = {"settings": sweep(kind, index, queries, truth if kind != "flat"
                                                                 else None, args)}
        del index
        gc.collect()
    for threads in args.threads:
        out = per_threads[str(threads)]
        flat = out["flat"]["settings"][0]
        for name in [n for n, k, _ in plan if k != "flat"]:
            c = out[name]["chosen"] = choose(out[name]["settings"], flat, out["exact_torch"], args.target_recall,
                                             by_speed=name == "hnsw_sq8")
            print(f"[{threads} thread(s)] {name}: {c['setting']} recall@{args.k} {c['recall_at_k']:.4f}, "
                  f"{c['speedup_single_vs_flat']:.1f}x single ({c['speedup_single_vs_flat_cpu_time']:.1f}x "
                  f"in CPU time) / {c['speedup_batched_vs_flat']:.1f}x batched vs flat; vs best exact "
                  f"{c['speedup_single_vs_best_exact']:.1f}x single, "
                  f"{c['speedup_batched_vs_best_exact']:.1f}x batched; "
                  f"target met: single {c['meets_target_single']}, batched {c['meets_target_batched']}", flush=True)
    payload = {"benchmark": "faiss_index", "machine": {**machine(args.threads[0]), "faiss": faiss.__version__,
                                                       "numpy": np.__version__, "load_average": os.getloadavg()},
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
               "data": desc, "peak_rss_mb": peak_rss_mb(), "total_seconds": time.perf_counter() - t_start,
               "builds": builds, "results": per_threads}
    print(f"peak RSS {peak_rss_mb():.0f} MiB; total {time.perf_counter() - t_start:.0f} s", flush=True)
    if args.out:
        write(args.out, payload)


if __name__ == "__main__":
    main()
