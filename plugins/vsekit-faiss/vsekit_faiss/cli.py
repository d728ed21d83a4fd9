"""``vsekit index``: build, query and list faiss indexes of banks (a thin shell over :mod:`vsekit_faiss.index`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

KIND = click.Choice(["flat", "ivf", "hnsw", "hnsw_sq8"])


@click.group("index")
def index_group() -> None:
    """faiss indexes (exact flat, approximate ivf / hnsw / hnsw_sq8) of embedding banks, saved beside the bank."""


@index_group.command("build")
@click.argument("bank_path", metavar="BANK", type=click.Path(path_type=Path))
@click.option("--kind", type=KIND, default="ivf", show_default=True,
              help="flat: exact; ivf, hnsw, hnsw_sq8 (8-bit graph, exact re-rank): approximate.")
@click.option("--nlist", type=click.IntRange(min=1), help="ivf: number of cells (default about sqrt(N)).")
@click.option("--nprobe", type=click.IntRange(min=1), help="ivf: cells scanned per query (default 16).")
@click.option("--train-size", type=click.IntRange(min=1), help="ivf: rows the k-means sees (default 64 per cell); "
              "hnsw_sq8: rows the quantizer is fit on (default 65536).")
@click.option("--m", "m", type=click.IntRange(min=2), help="hnsw: links per node (default 32).")
@click.option("--ef-construction", type=click.IntRange(min=1), help="hnsw: build-time beam (default 80).")
@click.option("--ef-search", type=click.IntRange(min=1), help="hnsw: query-time beam (default 64).")
@click.option("--k-factor", type=click.FloatRange(min=1),
              help="hnsw_sq8: candidates re-ranked exactly, x k (default 4).")
@click.option("--threads", type=click.IntRange(min=1), help="faiss threads (default: all cores).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Index file (default: BANK.KIND.faiss beside the bank).")
def build_cmd(bank_path: Path, kind: str, nlist: int | None, nprobe: int | None, train_size: int | None,
              m: int | None, ef_construction: int | None, ef_search: int | None, k_factor: float | None,
              threads: int | None, output: Path | None) -> None:
    """Index the bank BANK (NAME, NAME.json or NAME.safetensors).

    \b
      vsekit index build runs/flickr8k/best.captions_bank --kind ivf --nprobe 32
      vsekit index build my_photos --kind hnsw --ef-search 128
    """
    from vsekit import retrieval
    from vsekit_faiss.index import BankIndex

    _threads(threads)
    bank = retrieval.load_bank(bank_path)
    params = {"flat": {}, "ivf": {"nlist": nlist, "nprobe": nprobe, "train_size": train_size},
              "hnsw": {"m": m, "ef_construction": ef_construction, "ef_search": ef_search},
              "hnsw_sq8": {"m": m, "ef_construction": ef_construction, "ef_search": ef_search, "k_factor": k_factor,
                           "train_size": train_size}}[kind]
    _refuse_foreign(kind, params, nlist=nlist, nprobe=nprobe, train_size=train_size, m=m,
                    ef_construction=ef_construction, ef_search=ef_search, k_factor=k_factor)
    bi = BankIndex.build(bank, kind, **params)
    path = bi.save(output)
    size = path.stat().st_size / 2**20
    click.echo(f"built {bi.index!r} of {bank.path} in {bi.index.meta['build_seconds']:.1f} s: {path} ({size:.1f} MiB)")


@index_group.command("search")
@click.argument("bank_path", metavar="BANK", type=click.Path(path_type=Path))
@click.argument("model", required=False, metavar="[MODEL]")
@click.option("--kind", type=KIND, default="ivf", show_default=True, help="Which index of BANK to use.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Index file (default: BANK.KIND.faiss beside the bank).")
@click.option("--text", help="Query with a caption (its embedding by MODEL).")
@click.option("--image", type=click.Path(path_type=Path), help="Query with an image file.")
@click.option("--vector", "vector_file", type=click.Path(path_type=Path),
              help="Query with a row of a .npy of embeddings (no model needed).")
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True, help="The row of --vector.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--nprobe", type=click.IntRange(min=1), help="ivf: cells to scan (overrides the saved value).")
@click.option("--ef-search", type=click.IntRange(min=1), help="hnsw: beam width (overrides the saved value).")
@click.option("--k-factor", type=click.FloatRange(min=1), help="hnsw_sq8: candidates re-ranked, x k (overrides).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def search_cmd(bank_path: Path, model: str | None, kind: str, index_path: Path | None, text: str | None,
               image: Path | None, vector_file: Path | None, row: int, k: int, nprobe: int | None,
               ef_search: int | None, k_factor: float | None, as_json: bool) -> None:
    """Top-k rows of BANK for a query, through its saved index.

    \b
      vsekit index search captions runs/flickr8k --text "a dog runs on the beach"
      vsekit index search my_photos --kind hnsw --vector queries.npy --row 3 --json
    """
    import numpy as np

    from vsekit import retrieval
    from vsekit.errors import VsekitError
    from vsekit.textsafe import terminal_text
    from vsekit_faiss.index import BankIndex

    given = [n for n, v in (("--text", text), ("--image", image), ("--vector", vector_file)) if v is not None]
    if len(given) != 1:
        raise VsekitError("give one query: --text TEXT, --image PATH or --vector FILE.npy"
                          + (f" (got {' and '.join(given)})" if given else ""))
    bank = retrieval.load_bank(bank_path)
    bi = BankIndex.load(bank, kind, index_path)
    bi.index.set_search_params(nprobe=nprobe, ef_search=ef_search, k_factor=k_factor)
    if vector_file is not None:
        vecs = np.load(vector_file, allow_pickle=False)
        if vecs.ndim != 2 or row >= len(vecs):
            raise VsekitError(f"{vector_file}: expected an (N, {bank.dim}) array with a row {row}, got {vecs.shape}")
        vec = vecs[row]
    else:
        r = retrieval.Retriever.load(model)
        retrieval.check_bank(bank, r.model)
        vec = r.embed_text(text) if text is not None else r.embed_image(image)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    hits = bi.search(vec, k)
    ms = 1e3 * (time.perf_counter() - t0)
    if as_json:
        click.echo(json.dumps({"bank": str(bank.path), "index": str(bi.index.path), "kind": bi.index.kind,
                               "params": bi.index.params, "k": k, "search_ms": ms,
                               "results": [h.to_dict() for h in hits]}, indent=1, ensure_ascii=False))
        return
    click.echo(f"top {len(hits)} of {len(bank)} {bank.kind} ({bi.index!r}, {ms:.1f} ms):")
    for h in hits:
        label = h.text if h.text is not None else h.id
        click.echo(f"{h.rank:>3}  {h.score:.3f}  {terminal_text(str(label))}")  # data: controls escaped


@index_group.command("info")
@click.argument("bank_path", metavar="BANK", type=click.Path(path_type=Path))
def info_cmd(bank_path: Path) -> None:
    """List the indexes saved beside BANK, with their parameters."""
    from vsekit.errors import VsekitError
    from vsekit.limits import read_json
    from vsekit_faiss.index import available, meta_path

    found = available(bank_path)
    if not found:
        click.echo(f"no index beside {bank_path} (build one with `vsekit index build {bank_path}`)")
        return
    for p in found:
        try:
            meta = read_json(meta_path(p))  # size and nesting bounded (vsekit.limits)
        except (OSError, VsekitError):
            meta = {}
        params = ", ".join(f"{k}={v}" for k, v in (meta.get("params") or {}).items() if v is not None)
        click.echo(f"{p}  {meta.get('kind', '?')}  {meta.get('count', '?')} x {meta.get('dim', '?')}  "
                   f"{p.stat().st_size / 2**20:.1f} MiB  {params}")


def _threads(threads: int | None) -> None:
    if threads:
        import faiss

        faiss.omp_set_num_threads(threads)


def _refuse_foreign(kind: str, params: dict, **given: int | None) -> None:
    from vsekit.errors import VsekitError

    foreign = [k for k, v in given.items() if v is not None and k not in params]
    if foreign:
        opts = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise VsekitError(f"{opts} do(es) not apply to a {kind} index")
