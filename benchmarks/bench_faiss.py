"""faiss indexes (vsekit-faiss) on a large caption bank: build time, memory, query latency, recall@10 vs exact.

    python benchmarks/bench_faiss.py [--n 500000] [--dim 1024] [--model runs/flickr8k_seeds/seed0/best.json]
                                     [--kinds flat ivf hnsw] [--threads 1 2] [--out benchmarks/results/faiss_500k.json]

The bank: a clustered mixture around real caption embeddings. The Flickr8K
train + dev captions are encoded by a trained model (``--model``; by default
``runs/flickr8k_seeds/seed0/best.json`` when it exists); each of the ``--n``
bank rows is one of them plus Gaussian noise of norm ``--noise`` (isotropic),
renormalized. Queries are the Flickr8K *test* captions encoded by the same
model (real captions the bank does not hold). Without a model (``--model
none`` or none found) the centres are random unit directions drawn from a
64-d subspace plus a little full-rank noise (so they cluster), and the queries
are fresh perturbations of centres; the JSON says which. Uniform random
vectors would defeat any index and say nothing about real banks.

Per kind: build seconds (``--build-threads``), RSS growth and index file
size, save/load seconds; then at each ``--threads``: single-query latency
(``--single`` queries one at a time: median and p95), batched latency (all
``--queries`` in one call), recall@10 against the exact ``flat`` index, for
each ``nprobe`` (ivf) / ``ef_search`` (hnsw) in the sweep.
``exact_torch`` is vsekit's own bank search (``Bank.search``: ``bank @ q`` and
``torch.topk``), the baseline an index must beat. The chosen setting is the
cheapest one with recall@10 >= ``--target-recall``; its speed-up is against
the exact flat index at the same thread count. Latencies are also given in
process CPU time (at one thread on a shared machine, close to a quiet
machine's wall time).
"""

from __future__ import annotations

import argparse
import gc
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
from _common import F8K_FEATURES, REPO, machine, write  # noqa: E402

DEFAULT_MODEL = REPO / "runs" / "flickr8k_seeds" / "seed0" / "best.json"
SWEEPS = {"ivf": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128]), "hnsw": ("ef_search", [16, 32, 64, 128, 256, 512])}


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
        reader = PrecompReader(PrecompReader.Config(dir=str(args.data)))
        caps = reader.read("train").captions + reader.read("dev").captions
        test = reader.read("test").captions
        t0 = time.perf_counter()
        centres = vsekit.encode_sentences(model, caps)
        queries = vsekit.encode_sentences(model, test)
        from vsekit.io import sha256_file

        weights = model_path.with_suffix(".safetensors")
        desc = {"source": "real caption embeddings", "model": str(model_path),
                "model_weights_sha256": sha256_file(weights) if weights.is_file() else None,
                "centres": f"{len(caps)} Flickr8K train+dev captions", "queries": "Flickr8K test captions",
                "encode_seconds": time.perf_counter() - t0}
        if len(queries) > args.queries:
            queries = queries[np.sort(rng.choice(len(queries), args.queries, replace=False))]
        return centres.astype(np.float32), queries.astype(np.float32), desc
    k, topics = 40000, 1000  # caption-like centres grouped under topics: two levels of clusters
    tops = unit_rows_(rng.standard_normal((topics, args.dim), dtype=np.float32))
    centres = unit_rows_(tops[rng.integers(topics, size=k)] +
                         0.7 * rng.standard_normal((k, args.dim), dtype=np.float32) / np.sqrt(args.dim))
    picks = rng.integers(k, size=args.queries)
    queries = unit_rows_(centres[picks] + args.noise * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
                         / np.sqrt(args.dim))
    return centres, queries, {"source": f"synthetic: {k} random centres around {topics} random topic directions",
                              "centres": f"{k} synthetic centres", "queries": "fresh perturbations of centres"}


def make_bank(centres: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit rows: a random centre each, plus isotropic Gaussian noise of expected norm ``noise``."""
    rng = np.random.default_rng(seed + 1)
    d = centres.shape[1]
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        out[s : s + m] = centres[rng.integers(len(centres), size=m)]
        out[s : s + m] += rng.standard_normal((m, d), dtype=np.float32) * np.float32(noise / np.sqrt(d))
    return unit_rows_(out)


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


def time_batched(fn: Any, queries: np.ndarray, repeats: int) -> dict[str, Any]:
    ts, cs = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(queries)
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
    med = statistics.median(ts)
    return {"total_s": med, "per_query_ms": 1e3 * med / len(queries), "runs_s": ts,
            "cpu_per_query_ms": 1e3 * statistics.median(cs) / len(queries)}


def time_exact_torch(bank: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """vsekit's own exact search: ``Bank.search`` (``bank @ q``, ``torch.topk``) on the same rows."""
    import torch

    from vsekit.retrieval import ImageBank

    tb = ImageBank(torch.from_numpy(bank), None)  # type: ignore[arg-type]
    return {"single": time_single(lambda q: tb.search(q, args.k), queries[: args.single]),
            "batched": time_batched(lambda q: tb.search(q, args.k), queries, args.batch_repeats)}


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
        size_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        loaded = load(path)
        load_s = time.perf_counter() - t0
        del loaded
    gc.collect()
    info = {"kind": kind, "params": dict(index.params), "build_s": build_s, "build_cpu_s": build_cpu_s,
            "build_threads": args.build_threads, "rss_growth_build_mb": rss1 - rss0, "index_file_mb": size_mb,
            "save_s": save_s, "load_s": load_s}
    print(f"  built {index!r} in {build_s:.1f} s (CPU {build_cpu_s:.1f} s), +{rss1 - rss0:.0f} MiB RSS, "
          f"file {size_mb:.0f} MiB, save {save_s:.1f} s, load {load_s:.1f} s", flush=True)
    return info, index


def sweep(kind: str, index: Any, queries: np.ndarray, truth: np.ndarray | None,
          args: argparse.Namespace) -> list[dict[str, Any]]:
    """Latency and recall@k for each nprobe / ef_search of the sweep (the one setting of flat)."""
    from vsekit_faiss import recall_at_k

    rows = []
    name, values = SWEEPS.get(kind, (None, [None]))
    for v in values:
        if name:
            index.set_search_params(**{name: v})
        row: dict[str, Any] = {name: v} if name else {}
        row["single"] = time_single(lambda q: index.search(q, args.k), queries[: args.single])
        row["batched"] = time_batched(lambda q: index.search(q, args.k), queries, args.batch_repeats)
        found = index.search(queries, args.k)[1]
        row["recall_at_k"] = 1.0 if truth is None else recall_at_k(found, truth, args.k)
        rows.append(row)
        print(f"  {kind:<5} {name or '':>9}={v if v is not None else '':<4} recall@{args.k} {row['recall_at_k']:.4f}  "
              f"single {row['single']['median_ms']:8.3f} ms (CPU {row['single']['cpu_median_ms']:8.3f})  "
              f"batched {row['batched']['per_query_ms']:8.4f} ms/query", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500_000, help="bank rows")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--model", default=None, help="checkpoint .json whose caption embeddings centre the bank "
                    "(default: runs/flickr8k_seeds/seed0/best.json if present); 'none' for synthetic centres")
    ap.add_argument("--data", type=Path, default=F8K_FEATURES)
    ap.add_argument("--noise", type=float, default=0.5, help="norm of the noise around each centre")
    ap.add_argument("--kinds", nargs="+", choices=["flat", "ivf", "hnsw"], default=["flat", "ivf", "hnsw"])
    ap.add_argument("--queries", type=int, default=1000, help="queries for recall and batched latency")
    ap.add_argument("--single", type=int, default=200, help="of which, timed one at a time")
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="faiss/torch threads for the queries (a list measures each)")
    ap.add_argument("--build-threads", type=int, default=os.cpu_count() or 1, help="faiss threads for the builds")
    ap.add_argument("--nlist", type=int, default=None, help="ivf cells (default: vsekit-faiss's, about sqrt(N))")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="folder for the save/load round trip (default: the system's)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import faiss
    import torch

    t0 = time.perf_counter()
    centres, queries, desc = centres_and_queries(args)
    bank = make_bank(centres, args.n, args.noise, args.seed)
    print(f"bank {bank.shape} from {desc['source']} ({desc['centres']}); {len(queries)} queries; "
          f"data {time.perf_counter() - t0:.1f} s; RSS {rss_mb():.0f} MiB", flush=True)
    desc.update(noise=args.noise, n=args.n, dim=args.dim, data_seconds=time.perf_counter() - t0)

    per_threads: dict[str, Any] = {str(t): {} for t in args.threads}
    for threads in args.threads:  # vsekit's own exact search (torch), the baseline
        torch.set_num_threads(threads)
        r = per_threads[str(threads)]["exact_torch"] = time_exact_torch(bank, queries, args)
        print(f"[{threads} thread(s)] torch exact (Bank.search): single {r['single']['median_ms']:.3f} ms "
              f"(CPU {r['single']['cpu_median_ms']:.3f}), batched {r['batched']['per_query_ms']:.4f} ms/query",
              flush=True)
    builds: dict[str, Any] = {}
    truth = None
    for kind in ["flat"] + [k for k in args.kinds if k != "flat"]:  # flat first: it gives the ground truth
        faiss.omp_set_num_threads(args.build_threads)
        params = {"ivf": {"nlist": args.nlist},
                  "hnsw": {"m": args.hnsw_m, "ef_construction": args.ef_construction}}.get(kind, {})
        builds[kind], index = build_and_store(kind, bank, args, params)
        if kind == "flat":
            top, truth = index.search(queries, args.k)
            desc["query_score_median_top1_top10"] = [float(np.median(top[:, 0])), float(np.median(top[:, -1]))]
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            print(f"[{threads} thread(s)]")
            per_threads[str(threads)][kind] = {"settings": sweep(kind, index, queries, truth if kind != "flat"
                                                                 else None, args)}
        del index
        gc.collect()
    for threads in args.threads:
        out = per_threads[str(threads)]
        flat = out["flat"]["settings"][0]
        for kind in ("ivf", "hnsw"):
            if kind not in out:
                continue
            ok = [s for s in out[kind]["settings"] if s["recall_at_k"] >= args.target_recall]
            best = ok[0] if ok else max(out[kind]["settings"], key=lambda s: s["recall_at_k"])
            chosen = {"setting": {k: v for k, v in best.items() if k in ("nprobe", "ef_search")},
                      "recall_at_k": best["recall_at_k"], "meets_target_recall": bool(ok),
                      "speedup_single_vs_flat": flat["single"]["median_ms"] / best["single"]["median_ms"],
                      "speedup_single_vs_flat_cpu_time":
                          flat["single"]["cpu_median_ms"] / best["single"]["cpu_median_ms"],
                      "speedup_batched_vs_flat": flat["batched"]["per_query_ms"] / best["batched"]["per_query_ms"],
                      "speedup_single_vs_exact_torch":
                          out["exact_torch"]["single"]["median_ms"] / best["single"]["median_ms"]}
            chosen["meets_target"] = bool(ok) and chosen["speedup_single_vs_flat"] >= 10
            out[kind]["chosen"] = chosen
            print(f"[{threads} thread(s)] {kind}: {chosen['setting']} recall@{args.k} {chosen['recall_at_k']:.4f}, "
                  f"{chosen['speedup_single_vs_flat']:.1f}x single ({chosen['speedup_single_vs_flat_cpu_time']:.1f}x "
                  f"in CPU time) / {chosen['speedup_batched_vs_flat']:.1f}x batched vs flat; "
                  f"target met: {chosen['meets_target']}", flush=True)
    payload = {"benchmark": "faiss_index", "machine": {**machine(args.threads[0]), "faiss": faiss.__version__,
                                                       "load_average": os.getloadavg()},
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
               "data": desc, "peak_rss_mb": peak_rss_mb(), "builds": builds, "results": per_threads}
    if args.out:
        write(args.out, payload)


if __name__ == "__main__":
    main()
