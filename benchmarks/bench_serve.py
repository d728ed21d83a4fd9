"""Benchmark ``vsekit serve``: HTTP round trips on loopback to a server process at one torch thread.

Usage (from the repository root, with the serve extra, vsekit-f8k and vsekit-efficientnet installed)::

    python benchmarks/bench_serve.py [--model f8k] [--runs 3] [--load-requests 1000] [--clients 32] \
        [--out benchmarks/results/serve.json]

The server is ``python -m vsekit serve MODEL --port 0 --threads 1`` (``OMP_NUM_THREADS=1``; ``--threads N`` to
compare); the client is
httpx in this process, on the same cores. Queries: the 1,000 Flickr8K test photos
(``flickr8k/splits/test.txt``) uploaded as stored, and the first caption of each (``captions.txt``).

* ``warm_image_query`` -- ``POST /api/captions`` (k=5) for each photo in turn: upload, EfficientNet-Lite0
  extraction, embedding, top-5 over the model's 30,000 training captions. Median of each run; the figure is
  the median of ``--runs`` runs. Target < 100 ms.
* ``warm_text_query`` -- ``POST /api/images`` (k=5) for each caption in turn, over the 1,000 test images.
  Target < 20 ms.
* ``load`` -- ``--clients`` concurrent clients share ``--load-requests`` requests (half photos, half captions,
  shuffled with a fixed seed), then stop; in the middle, malformed and oversized requests that must get their
  4xx while every other request gets 200. Throughput, p50/p99 latency, failures.
* ``memory`` -- the server's RSS (``/proc/PID/status``) after 100 warm-up requests and after everything else:
  target within 50 MB. ``cpu_ms_per_request``: the server's CPU time (``/proc/PID/stat``) per request, which
  is close to a quiet machine's wall figure when other jobs share the cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED, machine, write

TARGETS_MS = {"warm_image_query": 100.0, "warm_text_query": 20.0}
RSS_GROWTH_MB = 50.0


def queries(n: int) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The first ``n`` Flickr8K test photos (name, bytes as stored) and the first caption of each."""
    root = SHARED / "flickr8k"
    names = (root / "splits" / "test.txt").read_text().split()[:n]
    first: dict[str, str] = {}
    with (root / "captions.txt").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            first.setdefault(row["image"], row["caption"])
    return [(m, (root / "images" / m).read_bytes()) for m in names], [first[m] for m in names]


def start(model: str, log: Path, threads: int = 1) -> tuple[subprocess.Popen, str]:
    """``vsekit serve MODEL --port 0 --threads THREADS`` (its stderr into ``log``) and the URL it prints."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "vsekit", "serve", model, "--port", "0", "--threads", str(threads)]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 1.0)[0]:
            line = proc.stdout.readline()
            if line.startswith("serving ") and " at http" in line:
                return proc, line.split(" at ", 1)[1].split()[0]
    proc.kill()
    raise SystemExit("the server did not start (run `vsekit serve` by hand to see why)")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ask(client: Any, url: str, kind: str, item: Any) -> tuple[int, float]:
    """One request; returns (status, milliseconds)."""
    t = time.perf_counter()
    if kind == "image":
        r = client.post(url + "api/captions", files={"image": item}, data={"k": "5"})
    elif kind == "text":
        r = client.post(url + "api/images", json={"text": item, "k": 5})
    else:  # a bad request: (path, httpx keyword arguments)
        r = client.post(url + item[0], **item[1])
    return r.status_code, (time.perf_counter() - t) * 1000


def sequential(client: Any, url: str, kind: str, items: list[Any]) -> tuple[list[float], list[Any]]:
    """Latencies (ms) of the requests answered 200, one after another, and the (status, item name) of others."""
    out, failed = [], []
    for item in items:
        status, ms = ask(client, url, kind, item)
        if status == 200:
            out.append(ms)
        else:
            failed.append((status, item[0] if kind == "image" else item))
    return out, failed


def bad_requests(limit_bytes: int, truncated: bytes) -> list[tuple[tuple[str, dict], int]]:
    """Malformed and oversized requests with the status each must get (``truncated``: half a JPEG)."""
    return [(("api/captions", {"files": {"image": ("x.jpg", b"not an image at all")}}), 415),
            (("api/captions", {"files": {"image": ("big.jpg", os.urandom(limit_bytes + 1))}}), 413),
            (("api/images", {"json": {"text": ""}}), 400),
            (("api/images", {"content": b"{", "headers": {"content-type": "application/json"}}), 400),
            (("api/captions", {"files": {"image": ("t.jpg", truncated)}}), 400)]


def load(url: str, photos: list, texts: list[str], n: int, clients: int) -> dict[str, Any]:
    """``n`` requests (half photos, half texts) over ``clients`` concurrent clients, bad ones in the middle."""
    import httpx

    rng = random.Random(0)
    work: list[tuple[str, Any, int]] = [("image", photos[i % len(photos)], 200) for i in range(n // 2)]
    work += [("text", texts[i % len(texts)], 200) for i in range(n - n // 2)]
    rng.shuffle(work)
    mid = len(work) // 2
    half_jpeg = photos[0][1][: len(photos[0][1]) // 2]
    work[mid:mid] = [("bad", req, want) for req, want in bad_requests(10 * 1024 * 1024, half_jpeg)]
    lock, results = threading.Lock(), []
    local = threading.local()

    def one(job: tuple[str, Any, int]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
        kind, item, want = job
        try:
            status, ms = ask(local.client, url, kind, item)
        except httpx.HTTPError as exc:
            status, ms = f"{type(exc).__name__}", float("nan")
        with lock:
            results.append((kind, status, want, ms))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, work))
    wall = time.perf_counter() - t0
    good = sorted(ms for kind, status, want, ms in results if kind != "bad" and status == want)
    failed = [(kind, status, want) for kind, status, want, _ in results if status != want]
    pct = statistics.quantiles(good, n=100) if len(good) > 1 else [float("nan")] * 99
    return {"requests": len(results), "clients": clients, "wall_s": round(wall, 2),
            "throughput_rps": round(len(results) / wall, 2), "p50_ms": round(pct[49], 1),
            "p99_ms": round(pct[98], 1), "failed": len(failed), "failures": failed[:20],
            "bad_requests": [{"status": s, "expected": w} for kind, s, w, _ in results if kind == "bad"]}


def ms(values: list[float]) -> dict[str, Any]:
    return {"median_ms": round(statistics.median(values), 2), "p90_ms": round(statistics.quantiles(values, n=10)[8], 2),
            "min_ms": round(min(values), 2), "max_ms": round(max(values), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="f8k")
    ap.add_argument("--photos", type=int, default=1000, help="test photos (and captions) per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load-requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads (the figures: 1)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve.json")
    args = ap.parse_args()
    import httpx

    photos, texts = queries(args.photos)
    load_before = os.getloadavg()
    log = Path(tempfile.gettempdir()) / "vsekit_bench_serve.log"
    proc, url = start(args.model, log, args.threads)
    try:
        with httpx.Client(timeout=120) as c:
            pairs = enumerate(zip(photos, texts, strict=True))
            warm = [("image", p) if i % 2 else ("text", t) for i, (p, t) in pairs][:100]
            for kind, item in warm:
                ask(c, url, kind, item)
            rss_warm = rss_mb(proc.pid)
            cases: dict[str, Any] = {"warm_image_query": {"runs": []}, "warm_text_query": {"runs": []}}
            cpu = {"image": [], "text": []}
            for run in range(args.runs):
                for kind, key, items in (("image", "warm_image_query", photos), ("text", "warm_text_query", texts)):
                    c0 = cpu_s(proc.pid)
                    times, failed = sequential(c, url, kind, items)
                    cases[key]["runs"].append({**ms(times), "failed": failed})
                    cpu[kind].append((cpu_s(proc.pid) - c0) * 1000 / len(items))
                    print(f"run {run + 1} {key}: {cases[key]['runs'][-1]['median_ms']} ms", flush=True)
        for kind, key in (("image", "warm_image_query"), ("text", "warm_text_query")):
            cases[key]["median_ms"] = round(statistics.median(r["median_ms"] for r in cases[key]["runs"]), 2)
            cases[key]["cpu_ms_per_request"] = round(statistics.median(cpu[kind]), 2)
            cases[key]["target_ms"] = TARGETS_MS[key]
            cases[key]["target_met"] = cases[key]["median_ms"] < TARGETS_MS[key]
        c0 = cpu_s(proc.pid)
        cases["load"] = load(url, photos, texts, args.load_requests, args.clients)
        cases["load"]["server_cpu_s"] = round(cpu_s(proc.pid) - c0, 2)
        print(f"load: {cases['load']['throughput_rps']} req/s, p50 {cases['load']['p50_ms']} ms, "
              f"p99 {cases['load']['p99_ms']} ms, failed {cases['load']['failed']}", flush=True)
        rss_after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        print(f"server log: {log}")
    cases["memory"] = {"rss_after_warmup_mb": round(rss_warm, 1), "rss_after_load_mb": round(rss_after, 1),
                       "growth_mb": round(rss_after - rss_warm, 1), "target_mb": RSS_GROWTH_MB,
                       "target_met": rss_after - rss_warm <= RSS_GROWTH_MB}
    write(args.out, {"machine": machine(args.threads), "model": args.model, "url": url, "photos": len(photos),
                     "load_average_before": [round(x, 2) for x in load_before],
                     "load_average_after": [round(x, 2) for x in os.getloadavg()], "cases": cases})


if __name__ == "__main__":
    main()
