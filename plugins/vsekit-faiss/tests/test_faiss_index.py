"""vsekit-faiss: exact = brute force, approximate recall on clustered data, files, errors, the plugin and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from vsekit_faiss import BankIndex, bank_index_path, build_index, load, recall_at_k, save, search

from vsekit import registry
from vsekit.cli import cli
from vsekit.errors import DataError, VsekitError
from vsekit.retrieval import CaptionBank, ImageBank, load_bank

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int = DIM, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit rows scattered around random centres: the structure real embedding banks have."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, dim)))
    rows = centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return unit(rows)


def brute_topk(bank: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ bank.astype(np.float64).T
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, idx, axis=1), idx


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    bank = clustered(6000)
    rng = np.random.default_rng(1)
    queries = unit(bank[rng.integers(len(bank), size=200)] + 0.3 * rng.standard_normal((200, DIM)) / np.sqrt(DIM))
    return bank, queries


def test_exact_index_equals_numpy_brute_force(data):
    bank, queries = data
    index = build_index(bank, "flat")
    scores, ids = search(index, queries, 10)
    want_scores, want_ids = brute_topk(bank, queries, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # ids agree except where two rows tie in score (float32 vs float64 order); compare the score sets there
    same = (ids == want_ids).mean()
    assert same > 0.999
    one_s, one_i = index.search(queries[0], 10)  # a single (dim,) query gives 1-D results
    assert one_s.shape == (10,) and np.array_equal(one_i, ids[0])


def test_flat_batch_search_equals_per_query_search_and_restores_the_blas_threshold(data):
    import faiss
    import vsekit_faiss.index as vfi

    bank, queries = data
    index = build_index(bank, "flat")
    before = faiss.cvar.distance_compute_blas_threshold
    batch_s, batch_i = index.search(queries[:50], 10)  # >= FLAT_BLAS_MIN_QUERIES: the BLAS path
    assert faiss.cvar.distance_compute_blas_threshold == before
    one = [index.search(q, 10) for q in queries[:50]]  # one at a time: faiss's per-query scan
    np.testing.assert_allclose(batch_s, np.stack([s for s, _ in one]), atol=1e-5)
    assert (batch_i == np.stack([i for _, i in one])).mean() > 0.999  # up to float ties
    assert len(queries[:50]) >= vfi.FLAT_BLAS_MIN_QUERIES > 1


@pytest.mark.parametrize("kind,params", [("ivf", {"nprobe": 8}), ("hnsw", {"ef_search": 64}),
                                         ("hnsw_sq8", {"ef_search": 64, "k_factor": 4})])
def test_approximate_recall_at_10_is_high_on_clustered_data(data, kind, params):
    bank, queries = data
    index = build_index(bank, kind, **params)
    _, truth = brute_topk(bank, queries, 10)
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.9, kind


def test_ivf_recall_grows_with_nprobe_and_full_probe_is_exact(data):
    bank, queries = data
    index = build_index(bank, "ivf", nlist=64)
    _, truth = brute_topk(bank, queries, 10)
    recalls = []
    for nprobe in (1, 4, 64):
        index.set_search_params(nprobe=nprobe)
        recalls.append(recall_at_k(index.search(queries, 10)[1], truth))
    assert recalls[0] <= recalls[1] <= recalls[2] and recalls[2] > 0.999
    assert index.params["nlist"] == 64 and index.params["nprobe"] == 64


def test_torch_and_float16_input(data):
    torch = pytest.importorskip("torch")
    bank, queries = data
    index = build_index(torch.from_numpy(bank).half(), "flat")
    assert index.search(torch.from_numpy(queries[:3]), 5)[1].shape == (3, 5)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "hnsw_sq8"])
def test_save_load_round_trip(tmp_path, data, kind):
    bank, queries = data
    index = build_index(bank, kind)
    path = save(index, tmp_path / f"bank.{kind}.faiss")
    meta = json.loads((tmp_path / f"bank.{kind}.faiss.json").read_text())
    assert meta["kind"] == kind and meta["count"] == len(bank) and meta["dim"] == DIM
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    again = load(path)
    assert again.kind == kind and again.params == index.params and len(again) == len(bank)
    s1, i1 = index.search(queries, 10)
    s2, i2 = again.search(queries, 10)
    assert np.array_equal(i1, i2) and np.allclose(s1, s2)


def test_search_params_survive_save_load(tmp_path, data):
    bank, _ = data
    index = build_index(bank, "hnsw", ef_search=100)
    assert load(save(index, tmp_path / "h.faiss")).index.hnsw.efSearch == 100
    index = build_index(bank, "ivf", nlist=32, nprobe=7)
    assert load(save(index, tmp_path / "i.faiss")).index.nprobe == 7
    index = build_index(bank, "hnsw_sq8", ef_search=90, k_factor=6)
    again = load(save(index, tmp_path / "q.faiss"))
    assert again._graph().hnsw.efSearch == 90 and again.index.k_factor == 6
    assert again.params["ef_search"] == 90 and again.params["k_factor"] == 6


def test_hnsw_sq8_scores_are_exact_and_recall_grows_with_ef_search(data):
    bank, queries = data
    index = build_index(bank, "hnsw_sq8", m=16, ef_construction=40, train_size=2000)
    assert index.params["train_size"] == 2000 and len(index) == len(bank)
    _, truth = brute_topk(bank, queries, 10)
    recalls = []
    for ef in (8, 32, 128):
        index.set_search_params(ef_search=ef, k_factor=4)
        scores, ids = index.search(queries, 10)
        recalls.append(recall_at_k(ids, truth))
        # re-ranked against the float32 rows: the scores are the exact inner products of the rows returned
        np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, bank[ids]), atol=1e-5)
    assert recalls[0] <= recalls[1] + 0.01 <= recalls[2] + 0.02 and recalls[2] >= 0.95
    one_s, one_i = index.search(queries[0], 10)
    assert one_s.shape == (10,) and np.array_equal(one_i, index.search(queries[:1], 10)[1][0])
    with pytest.raises(VsekitError, match="k_factor must be >= 1"):
        index.set_search_params(k_factor=0.5)
    with pytest.raises(VsekitError, match="k_factor applies to hnsw_sq8"):
        build_index(bank[:100], "hnsw").set_search_params(k_factor=2)


def test_bank_index_beside_the_bank_and_hits(tmp_path, data):
    emb, queries = data
    texts = [f"caption {i}" for i in range(len(emb))]
    bank = CaptionBank(emb, texts, [f"img{i // 5}.jpg" for i in range(len(emb))])
    bank.save(tmp_path / "caps")
    bi = BankIndex.build(bank, "hnsw")
    path = bi.save()
    assert path == tmp_path / "caps.hnsw.faiss" == bank_index_path(tmp_path / "caps.json", "hnsw")
    loaded = BankIndex.load(load_bank(tmp_path / "caps"), "hnsw")
    hits = loaded.search(queries[0], 5)
    exact = bank.search(queries[0], 5)
    assert [h.index for h in hits] == [h.index for h in exact]
    assert hits[0].text == texts[hits[0].index] and hits[0].rank == 1
    assert len(loaded.search(queries[:3], 5)) == 3


def test_a_stale_index_is_refused(tmp_path, data):
    emb, _ = data
    bank = ImageBank(emb, [str(i) for i in range(len(emb))])
    bank.save(tmp_path / "ims")
    BankIndex.build(bank, "flat").save()
    ImageBank(emb[::-1].copy(), bank.ids).save(tmp_path / "ims")  # same size, other embeddings
    with pytest.raises(DataError, match="other embeddings"):
        BankIndex.load(load_bank(tmp_path / "ims"), "flat")


def test_clear_errors(tmp_path, data):
    bank, queries = data
    index = build_index(bank[:100], "flat")
    with pytest.raises(DataError, match=r"index has dim 64.*\(65,\)"):
        index.search(np.ones(65, dtype=np.float32), 3)
    with pytest.raises(DataError, match="empty"):
        build_index(np.zeros((0, DIM), dtype=np.float32), "flat")
    with pytest.raises(DataError, match="empty"):
        BankIndex.build(ImageBank(np.zeros((0, DIM), dtype=np.float32), []), "ivf")
    with pytest.raises(DataError, match="not 1"):
        build_index(bank[:100] * 3, "flat")
    with pytest.raises(DataError, match="NaN"):
        bad = bank[:100].copy()
        bad[5, 0] = np.nan
        build_index(bad, "flat")
    with pytest.raises(VsekitError, match="did you mean 'hnsw'"):
        build_index(bank[:100], "hnws")
    with pytest.raises(VsekitError, match=r"unknown parameter.*nprobe"):
        build_index(bank[:100], "hnsw", nprobe=3)
    with pytest.raises(VsekitError, match=r"hnsw_sq8 index: unknown parameter\(s\) nprobe; hnsw_sq8 takes m, "):
        build_index(bank[:100], "hnsw_sq8", nprobe=3)
    with pytest.raises(VsekitError, match=r"unknown parameter.*k_factor"):
        build_index(bank[:100], "hnsw", k_factor=3)
    with pytest.raises(VsekitError, match="k_factor must be >= 1"):
        build_index(bank[:100], "hnsw_sq8", k_factor=0)
    with pytest.raises(VsekitError, match="did you mean 'hnsw_sq8'"):
        build_index(bank[:100], "hnsw_sq")
    with pytest.raises(DataError, match="nlist"):
        build_index(bank[:100], "ivf", nlist=1000)
    with pytest.raises(VsekitError, match="k must be"):
        index.search(queries[0], 0)
    with pytest.raises(DataError, match="no such index"):
        load(tmp_path / "missing.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"not faiss")
    (tmp_path / "junk.faiss.json").write_text(json.dumps({"format": "vsekit-faiss-index/1", "kind": "flat"}))
    with pytest.raises(DataError, match="cannot read the faiss index"):
        load(tmp_path / "junk.faiss")
    assert build_index(bank[:100] * 3, "flat", check_norm=False).search(queries[0], 1)[1].shape == (1,)


def test_k_larger_than_the_bank(data):
    bank, queries = data
    _scores, ids = build_index(bank[:7], "flat").search(queries[:2], 10)
    assert ids.shape == (2, 7)


@pytest.fixture(scope="module", autouse=True)
def _commands():
    """`vsekit` adds plugin commands at start-up (vsekit.cli.main); do the same for the click test runner."""
    if "index" not in cli.commands:
        registry.manager().add_commands(cli)


def test_registered_as_a_plugin_with_the_index_command():
    mgr = registry.manager()
    assert "faiss" in mgr.plugins, "pip install -e plugins/vsekit-faiss"
    assert "index" in cli.commands


def test_cli_build_search_info(tmp_path, data):
    emb, queries = data
    bank = CaptionBank(emb, [f"caption {i}" for i in range(len(emb))])
    bank.save(tmp_path / "caps")
    np.save(tmp_path / "q.npy", queries[:4])
    runner = CliRunner()
    res = runner.invoke(cli, ["index", "build", str(tmp_path / "caps"), "--kind", "ivf", "--nlist", "32",
                              "--nprobe", "32"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "caps.ivf.faiss").is_file()
    res = runner.invoke(cli, ["index", "search", str(tmp_path / "caps"), "--vector", str(tmp_path / "q.npy"),
                              "--row", "2", "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    want = bank.search(queries[2], 3)
    assert [r["index"] for r in got["results"]] == [h.index for h in want]
    res = runner.invoke(cli, ["index", "info", str(tmp_path / "caps")])
    assert "caps.ivf.faiss" in res.output and "nlist=32" in res.output
    res = runner.invoke(cli, ["index", "build", str(tmp_path / "caps"), "--kind", "flat", "--nprobe", "3"])
    assert res.exit_code == 2 and "--nprobe" in res.output
    res = runner.invoke(cli, ["index", "search", str(tmp_path / "caps"), "--kind", "hnsw", "--vector",
                              str(tmp_path / "q.npy")])
    assert res.exit_code == 2 and "no such index" in res.output



def test_cli_hnsw_sq8_build_and_search_with_k_factor(tmp_path, data):
    emb, queries = data
    bank = CaptionBank(emb, [f"caption {i}" for i in range(len(emb))])
    bank.save(tmp_path / "caps")
    np.save(tmp_path / "q.npy", queries[:4])
    runner = CliRunner()
    res = runner.invoke(cli, ["index", "build", str(tmp_path / "caps"), "--kind", "hnsw_sq8", "--m", "16",
                              "--ef-construction", "40", "--k-factor", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "caps.hnsw_sq8.faiss").is_file()
    res = runner.invoke(cli, ["index", "search", str(tmp_path / "caps"), "--kind", "hnsw_sq8", "--vector",
                              str(tmp_path / "q.npy"), "--row", "1", "-k", "3", "--ef-search", "128",
                              "--k-factor", "8", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["params"]["k_factor"] == 8 and got["params"]["ef_search"] == 128
    assert [r["index"] for r in got["results"]] == [h.index for h in bank.search(queries[1], 3)]
    res = runner.invoke(cli, ["index", "build", str(tmp_path / "caps"), "--kind", "hnsw", "--k-factor", "3"])
    assert res.exit_code == 2 and "--k-factor" in res.output
