"""Tests for vsekit.metrics: ranks, summaries, folds and chance level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsekit.metrics import (
    chance_rsum,
    ranks_both,
    ranks_i2t,
    ranks_t2i,
    recall,
    recall_summary,
)


# --------------------------------------------------------------------------- #
# Brute-force references: one Python loop iteration per query, in float64.
# pessimistic: the rule read literally (1 + other candidates scoring >=);
# reference: the reference's evaluation.py, numpy.argsort(d, kind="stable")[::-1].
# --------------------------------------------------------------------------- #
def brute_i2t(img: np.ndarray, cap: np.ndarray, cap2img: np.ndarray, ties: str = "pessimistic") -> np.ndarray:
    img64, cap64 = np.asarray(img, np.float64), np.asarray(cap, np.float64)
    out = []
    for i in range(len(img64)):
        d = cap64 @ img64[i]
        own = [j for j in range(len(cap64)) if cap2img[j] == i]
        if ties == "reference":
            inds = np.argsort(d, kind="stable")[::-1]
            out.append(min(int(np.where(inds == j)[0][0]) for j in own))
        else:
            best = max(d[j] for j in own)
            out.append(sum(1 for j in range(len(cap64)) if cap2img[j] != i and d[j] >= best))
    return np.array(out, dtype=np.int64)


def brute_t2i(img: np.ndarray, cap: np.ndarray, cap2img: np.ndarray, ties: str = "pessimistic") -> np.ndarray:
    img64, cap64 = np.asarray(img, np.float64), np.asarray(cap, np.float64)
    out = []
    for j in range(len(cap64)):
        d = img64 @ cap64[j]
        if ties == "reference":
            inds = np.argsort(d, kind="stable")[::-1]
            out.append(int(np.where(inds == cap2img[j])[0][0]))
        else:
            out.append(sum(1 for m in range(len(img64)) if m != cap2img[j] and d[m] >= d[cap2img[j]]))
    return np.array(out, dtype=np.int64)


def tie_heavy_setup(
    rng: np.random.Generator, n_img: int, n_cap: int, dim: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small-integer embeddings (exact float32 scores, lots of ties).

    Every image gets at least one caption; the rest are assigned at random and
    the caption order is shuffled so captions of an image are not contiguous.
    """
    img = rng.integers(-2, 3, size=(n_img, dim)).astype(np.float32)
    cap = rng.integers(-2, 3, size=(n_cap, dim)).astype(np.float32)
    cap2img = np.concatenate([np.arange(n_img), rng.integers(0, n_img, n_cap - n_img)])
    rng.shuffle(cap2img)
    return img, cap, cap2img


@pytest.fixture(scope="module")
def tie_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tie_heavy_setup(np.random.default_rng(1234), n_img=300, n_cap=700)


@pytest.fixture(scope="module")
def brute_ranks(tie_data) -> tuple[np.ndarray, np.ndarray]:
    return brute_i2t(*tie_data), brute_t2i(*tie_data)


@pytest.fixture(scope="module")
def brute_ranks_reference(tie_data) -> tuple[np.ndarray, np.ndarray]:
    return brute_i2t(*tie_data, ties="reference"), brute_t2i(*tie_data, ties="reference")


# --------------------------------------------------------------------------- #
# (a) vectorized == brute force, for both tie rules
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("ties", ["pessimistic", "reference"])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1024, 100_000])
def test_ranks_match_brute_force(tie_data, brute_ranks, brute_ranks_reference, chunk_size, ties):
    img, cap, cap2img = tie_data
    want_i2t, want_t2i = brute_ranks if ties == "pessimistic" else brute_ranks_reference
    assert np.unique(want_i2t).size > 5 and np.unique(want_t2i).size > 5  # non-trivial
    got_i2t = ranks_i2t(img, cap, cap2img, chunk_size=chunk_size, ties=ties)
    got_t2i = ranks_t2i(img, cap, cap2img, chunk_size=chunk_size, ties=ties)
    assert got_i2t.dtype == np.int64 and got_t2i.dtype == np.int64
    np.testing.assert_array_equal(got_i2t, want_i2t)
    np.testing.assert_array_equal(got_t2i, want_t2i)
    both_i2t, both_t2i = ranks_both(img, cap, cap2img, chunk_size=chunk_size, ties=ties)
    np.testing.assert_array_equal(both_i2t, want_i2t)
    np.testing.assert_array_equal(both_t2i, want_t2i)


def test_tie_rules_differ_on_the_fixture(brute_ranks, brute_ranks_reference):
    """Guard: on tie-heavy data the reference order ranks some queries better than the pessimistic rule,
    never worse (the pessimistic rank counts every tie, the reference order only some)."""
    for pess, ref in zip(brute_ranks, brute_ranks_reference, strict=True):
        assert (ref <= pess).all() and (ref < pess).mean() > 0.3


@pytest.mark.parametrize("n_img", [1, 3, 200])
def test_all_equal_scores_rank_last(n_img):
    """Every score equal (all-zero embeddings): every R@K is 0, aMedr = 5N - 4 and sMedr = N."""
    img = np.zeros((n_img, 8), np.float32)
    cap = np.zeros((5 * n_img, 8), np.float32)
    cap2img = np.repeat(np.arange(n_img), 5)
    r_i2t, r_t2i = ranks_both(img, cap, cap2img, chunk_size=64)
    np.testing.assert_array_equal(r_i2t, np.full(n_img, 5 * n_img - 5))
    np.testing.assert_array_equal(r_t2i, np.full(5 * n_img, n_img - 1))
    if n_img == 200:
        m = recall(img, cap, cap2img)
        assert m["i2t_medr"] == 5 * n_img - 4 and m["t2i_medr"] == n_img
        assert all(m[k] == 0.0 for k in m if "_r" in k) and m["rsum"] == 0.0


def test_ties_are_frequent_in_fixture(tie_data):
    """Guard: the fixture really exercises the tie rule."""
    img, cap, cap2img = tie_data
    scores = img @ cap.T
    own = scores[cap2img, np.arange(len(cap))]
    ties_with_own = (scores == own[None, :]).sum(axis=0) - 1
    assert (ties_with_own > 0).mean() > 0.5


def test_torch_and_float64_inputs(tie_data, brute_ranks):
    img, cap, cap2img = tie_data
    want_i2t, want_t2i = brute_ranks
    got = ranks_both(torch.from_numpy(img), torch.from_numpy(cap), torch.from_numpy(cap2img), 7)
    np.testing.assert_array_equal(got[0], want_i2t)
    np.testing.assert_array_equal(got[1], want_t2i)
    got64 = ranks_i2t(img.astype(np.float64), cap.astype(np.float64), cap2img.astype(np.int32))
    np.testing.assert_array_equal(got64, want_i2t)
    # Non-contiguous / read-only inputs are accepted.
    img_f = np.asfortranarray(img)
    cap_ro = cap.copy()
    cap_ro.flags.writeable = False
    np.testing.assert_array_equal(ranks_t2i(img_f, cap_ro, cap2img, 13), want_t2i)


def test_input_arrays_are_not_modified(tie_data):
    img, cap, cap2img = tie_data
    copies = [a.copy() for a in tie_data]
    recall(img, cap, cap2img, chunk_size=7)
    for before, after in zip(copies, tie_data, strict=True):
        np.testing.assert_array_equal(before, after)


# --------------------------------------------------------------------------- #
# (b) hand-built example
# --------------------------------------------------------------------------- #
def test_hand_built_example():
    img = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    cap = np.array(
        [[0, 1], [2, 0], [1, 0], [-1, 0], [0, 3], [1, 1]],
        dtype=np.float32,
    )
    cap2img = np.array([0, 0, 1, 1, 2, 2])
    # Score matrix (rows = images, cols = captions):
    #   img0 [1,0]: [0, 2,  1, -1, 0, 1]   own caps 0,1 -> best 2
    #   img1 [0,1]: [1, 0,  0,  0, 3, 1]   own caps 2,3 -> best 0
    #   img2 [1,1]: [1, 2,  1, -1, 3, 2]   own caps 4,5 -> best 3
    # Pessimistic (other candidates scoring >= the ground truth):
    # i2t: img0: no other caption >= 2 -> 0; img1: caps 0, 1, 4, 5 (1, 0, 3, 1) >= 0 -> 4; img2: none >= 3 -> 0
    # t2i (columns): cap0 own=img0 score 0; img1=1, img2=1 -> 2
    #   cap1 own=img0 score 2; img2 ties (2) -> 1
    #   cap2 own=img1 score 0; img0=1, img2=1 -> 2
    #   cap3 own=img1 score 0; img0=-1, img2=-1 -> 0
    #   cap4 own=img2 score 3; img1 ties (3) -> 1
    #   cap5 own=img2 score 2; img0=1, img1=1 -> 0
    np.testing.assert_array_equal(ranks_i2t(img, cap, cap2img), [0, 4, 0])
    np.testing.assert_array_equal(ranks_t2i(img, cap, cap2img), [2, 1, 2, 0, 1, 0])
    np.testing.assert_array_equal(ranks_both(img, cap, cap2img, 2)[0], [0, 4, 0])
    np.testing.assert_array_equal(ranks_both(img, cap, cap2img, 2)[1], [2, 1, 2, 0, 1, 0])
    # Reference order, argsort(d, kind="stable")[::-1] (equal scores: the higher index first):
    # img1: order 4, 5, 0, 3, 2, 1 -> own cap3 at 3; cap1 over images (2, 0, 2): order 2, 0, 1 -> 1;
    # cap4 over images (0, 3, 3): order 2, 1, 0 -> own img2 first -> 0.
    np.testing.assert_array_equal(ranks_i2t(img, cap, cap2img, ties="reference"), [0, 3, 0])
    np.testing.assert_array_equal(ranks_t2i(img, cap, cap2img, ties="reference"), [2, 1, 2, 0, 0, 0])

    res = recall(img, cap, cap2img)
    assert res["i2t_r1"] == pytest.approx(200 / 3)
    assert res["i2t_r5"] == 100.0
    assert res["t2i_r1"] == pytest.approx(200 / 6)
    assert res["t2i_medr"] == 2.0  # median of [0,0,1,1,2,2] = 1
    assert res["i2t_meanr"] == pytest.approx(7 / 3)  # mean 4/3 + 1
    assert res["rsum"] == pytest.approx(200 / 3 + 100 + 100 + 200 / 6 + 100 + 100)


# --------------------------------------------------------------------------- #
# (c) folds
# --------------------------------------------------------------------------- #
def test_five_folds_equal_manual_per_fold():
    rng = np.random.default_rng(7)
    n_img, per_img, dim, n_folds = 50, 5, 8, 5
    img = rng.standard_normal((n_img, dim)).astype(np.float32)
    cap2img = rng.permutation(np.repeat(np.arange(n_img), per_img))
    cap = (img[cap2img] + 0.7 * rng.standard_normal((len(cap2img), dim))).astype(np.float32)

    res = recall(img, cap, cap2img, folds=n_folds, chunk_size=7)
    assert len(res["folds"]) == n_folds

    size = n_img // n_folds
    manual = []
    for f in range(n_folds):
        lo, hi = f * size, (f + 1) * size
        keep = (cap2img >= lo) & (cap2img < hi)
        sub_img, sub_cap, sub_c2i = img[lo:hi], cap[keep], cap2img[keep] - lo
        summary = recall_summary(
            brute_i2t(sub_img, sub_cap, sub_c2i), brute_t2i(sub_img, sub_cap, sub_c2i)
        )
        assert res["folds"][f] == pytest.approx(summary)
        manual.append(summary)
    for key in manual[0]:
        assert res[key] == pytest.approx(np.mean([m[key] for m in manual])), key
    # Folded evaluation is genuinely different from the full-set one.
    assert recall(img, cap, cap2img)["rsum"] != pytest.approx(res["rsum"])
    assert "folds" not in recall(img, cap, cap2img, folds=1)


# --------------------------------------------------------------------------- #
# (d) summary formulas
# --------------------------------------------------------------------------- #
def test_summary_formulas_on_known_ranks():
    r_i2t = np.array([0, 1, 2, 3, 10])  # median 2 -> medr 3; mean 3.2 -> meanr 4.2
    r_t2i = np.array([0, 0, 4, 7])  # median 2.0 -> medr 3; mean 2.75 -> meanr 3.75
    s = recall_summary(r_i2t, r_t2i)
    assert list(s) == [
        "i2t_r1", "i2t_r5", "i2t_r10", "i2t_medr", "i2t_meanr",
        "t2i_r1", "t2i_r5", "t2i_r10", "t2i_medr", "t2i_meanr", "rsum",
    ]  # fmt: skip
    assert s["i2t_r1"] == 20.0 and s["i2t_r5"] == 80.0 and s["i2t_r10"] == 80.0
    assert s["i2t_medr"] == 3.0 and s["i2t_meanr"] == pytest.approx(4.2)
    assert s["t2i_r1"] == 50.0 and s["t2i_r5"] == 75.0 and s["t2i_r10"] == 100.0
    assert s["t2i_medr"] == 3.0 and s["t2i_meanr"] == pytest.approx(3.75)
    assert s["rsum"] == pytest.approx(20 + 80 + 80 + 50 + 75 + 100)
    # Even length with a fractional median: floor(1.5) + 1 = 2.
    assert recall_summary([0, 1, 2, 3], [0])["i2t_medr"] == 2.0
    assert all(isinstance(v, float) for v in s.values())


def test_summary_custom_ks():
    s = recall_summary(np.array([0, 2, 4]), np.array([1, 1, 50]), ks=(2, 3))
    assert set(s) == {
        "i2t_r2", "i2t_r3", "i2t_medr", "i2t_meanr",
        "t2i_r2", "t2i_r3", "t2i_medr", "t2i_meanr", "rsum",
    }  # fmt: skip
    assert s["i2t_r3"] == pytest.approx(200 / 3) and s["t2i_r2"] == pytest.approx(200 / 3)
    assert s["rsum"] == pytest.approx(100 / 3 + 200 / 3 + 200 / 3 + 200 / 3)


# --------------------------------------------------------------------------- #
# (e) chance level
# --------------------------------------------------------------------------- #
def test_chance_rsum_exact_small_cases():
    # n=1: everything is at rank 0.
    assert chance_rsum(1, 5) == pytest.approx(600.0)
    # n=2, c=1, K=1: i2t 1/2, t2i 1/2 -> 100 %.
    assert chance_rsum(2, 1, ks=(1,)) == pytest.approx(100.0)
    # n=3, c=2, K=1: best of 2 gt among 6 is first w.p. 2/6; t2i 1/3.
    assert chance_rsum(3, 2, ks=(1,)) == pytest.approx(100 * (2 / 6 + 1 / 3))
    # Large n stays finite and tiny.
    assert 0 < chance_rsum(5000) < 1


def test_chance_rsum_matches_monte_carlo():
    n, c, trials = 20, 5, 4000
    rng = np.random.default_rng(2024)
    cap2img = np.repeat(np.arange(n), c)
    scores = rng.random((trials, n, n * c))  # i.i.d. scores, ties have probability ~0
    own = scores[:, cap2img, np.arange(n * c)]  # (trials, n*c)
    best = own.reshape(trials, n, c).max(axis=2)  # (trials, n)
    r_i2t = (scores > best[:, :, None]).sum(axis=2)
    r_t2i = (scores > own[:, None, :]).sum(axis=1)
    per_trial = sum(100 * (r < k).mean(axis=1) for r in (r_i2t, r_t2i) for k in (1, 5, 10))
    estimate = per_trial.mean()
    std_err = per_trial.std(ddof=1) / math.sqrt(trials)
    exact = chance_rsum(n, c)
    assert abs(estimate - exact) < 4 * std_err + 1e-9, (estimate, exact, std_err)


# --------------------------------------------------------------------------- #
# (f) errors
# --------------------------------------------------------------------------- #
@pytest.fixture()
def small() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((4, 3)).astype(np.float32)
    cap = rng.standard_normal((8, 3)).astype(np.float32)
    return img, cap, np.repeat(np.arange(4), 2)


@pytest.mark.parametrize("fn", [ranks_i2t, ranks_t2i, ranks_both, recall])
def test_shape_errors(fn, small):
    img, cap, c2i = small
    with pytest.raises(ValueError, match="length"):
        fn(img, cap, c2i[:-1])
    with pytest.raises(ValueError, match="dims differ"):
        fn(img, cap[:, :2], c2i)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        fn(img, cap, np.where(c2i == 3, 4, c2i))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        fn(img, cap, np.where(c2i == 0, -1, c2i))
    with pytest.raises(ValueError, match="2-D"):
        fn(img[0], cap, c2i)
    with pytest.raises(ValueError, match="integer"):
        fn(img, cap, c2i.astype(np.float32))
    with pytest.raises(ValueError, match="NaN"):
        fn(img, np.where(np.arange(3) == 1, np.nan, cap), c2i)
    with pytest.raises(ValueError, match="chunk_size"):
        fn(img, cap, c2i, chunk_size=0)


def test_missing_captions_and_fold_errors(small):
    img, cap, c2i = small
    with pytest.raises(ValueError, match="no caption"):
        ranks_i2t(img, cap, np.where(c2i == 2, 1, c2i))
    # Image search alone is well defined for caption-less images.
    assert ranks_t2i(img, cap, np.where(c2i == 2, 1, c2i)).shape == (8,)
    with pytest.raises(ValueError, match="do not split into 3 equal folds"):
        recall(img, cap, c2i, folds=3)
    with pytest.raises(ValueError, match="folds"):
        recall(img, cap, c2i, folds=0)
    with pytest.raises(ValueError, match="fewer than the 10"):
        recall(img, cap, c2i, folds=2)
    with pytest.raises(ValueError, match="tie rule"):
        recall(img, cap, c2i, ties="optimistic")
    with pytest.raises(ValueError, match="ks"):
        recall(img, cap, c2i, ks=(0, 5))
    with pytest.raises(ValueError, match="non-empty"):
        recall_summary(np.array([]), np.array([0]))
    assert recall(img, cap, c2i, folds=1).keys() == recall(img, cap, c2i).keys()


# --------------------------------------------------------------------------- #
# (g) property test
# --------------------------------------------------------------------------- #
@st.composite
def setups(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n_img = draw(st.integers(1, 8))
    n_extra = draw(st.integers(0, 12))
    dim = draw(st.integers(1, 4))
    small_ints = st.integers(-2, 2)
    img = np.array(draw(st.lists(small_ints, min_size=n_img * dim, max_size=n_img * dim)))
    n_cap = n_img + n_extra
    cap = np.array(draw(st.lists(small_ints, min_size=n_cap * dim, max_size=n_cap * dim)))
    extra = draw(st.lists(st.integers(0, n_img - 1), min_size=n_extra, max_size=n_extra))
    order = draw(st.permutations(list(range(n_img)) + extra))
    chunk = draw(st.integers(1, 10))
    return (
        img.reshape(n_img, dim).astype(np.float32),
        cap.reshape(n_cap, dim).astype(np.float32),
        np.array(order, dtype=np.int64),
        chunk,
    )


@settings(max_examples=150, deadline=None)
@given(setups(), st.sampled_from(["pessimistic", "reference"]))
def test_property_vectorized_equals_brute_force(setup, ties):
    img, cap, cap2img, chunk = setup
    want_i2t, want_t2i = brute_i2t(img, cap, cap2img, ties), brute_t2i(img, cap, cap2img, ties)
    np.testing.assert_array_equal(ranks_i2t(img, cap, cap2img, chunk, ties), want_i2t)
    np.testing.assert_array_equal(ranks_t2i(img, cap, cap2img, chunk, ties), want_t2i)
    both = ranks_both(img, cap, cap2img, chunk, ties)
    np.testing.assert_array_equal(both[0], want_i2t)
    np.testing.assert_array_equal(both[1], want_t2i)
