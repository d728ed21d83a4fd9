"""Property tests (hypothesis): recall summaries and folds, tokenizer and vocabulary, spec round trips,
checkpoint round trips and the optimizer state a resume restores.

Ranks against a brute-force loop on tie-heavy embeddings are in ``test_metrics_core.py``
(``test_property_vectorized_equals_brute_force``); here the whole summary is checked, per fold, against a
per-query computation on the similarity matrix.
"""

from __future__ import annotations

import json
import math
import tomllib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsekit import checkpoint
from vsekit import spec as spec_mod
from vsekit.data.batching import CaptionStore
from vsekit.data.tokenize import tokenize
from vsekit.data.vocab import UNK, Vocab, encode_all
from vsekit.metrics import recall
from vsekit.model import JointModel, encode_images, encode_sentences
from vsekit.training.state import load_optimizer_state, optimizer_state

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- recall


def brute_summary(sim: np.ndarray, cap2img: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """R@K, medr, meanr and rsum from a (images x captions) similarity matrix, one query at a time."""
    n_img, n_cap = sim.shape
    i2t = []
    for i in range(n_img):
        own = max(sim[i, j] for j in range(n_cap) if cap2img[j] == i)
        # ties count against the query: every other caption scoring >= the best own one ranks ahead
        i2t.append(sum(1 for j in range(n_cap) if cap2img[j] != i and sim[i, j] >= own))
    t2i = [sum(1 for i in range(n_img) if i != cap2img[j] and sim[i, j] >= sim[cap2img[j], j]) for j in range(n_cap)]
    out: dict[str, float] = {}
    for name, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * sum(r < k for r in ranks) / len(ranks)
        out[f"{name}_medr"] = math.floor(float(np.median(ranks))) + 1
        out[f"{name}_meanr"] = sum(ranks) / len(ranks) + 1
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


@st.composite
def folded_setups(draw):
    folds = draw(st.integers(1, 3))
    per_fold = draw(st.integers(1, 4) if folds == 1 else st.integers(10, 11))  # a fold holds >= 10 images
    n_img = folds * per_fold
    dim = draw(st.integers(1, 3))
    caps_per = draw(st.lists(st.integers(1, 3), min_size=n_img, max_size=n_img))
    cap2img = np.array(draw(st.permutations([i for i, c in enumerate(caps_per) for _ in range(c)])), dtype=np.int64)
    small = st.integers(-2, 2)  # small integers: exact float32 scores, many ties
    img = np.array(draw(st.lists(small, min_size=n_img * dim, max_size=n_img * dim)), np.float32).reshape(n_img, dim)
    cap = np.array(draw(st.lists(small, min_size=len(cap2img) * dim, max_size=len(cap2img) * dim)),
                   np.float32).reshape(len(cap2img), dim)
    ks = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True)))
    chunk = draw(st.integers(1, 8))
    return img, cap, cap2img, folds, ks, chunk


@FAST
@given(folded_setups())
def test_recall_summary_and_folds_equal_a_per_query_computation(setup):
    img, cap, cap2img, folds, ks, chunk = setup
    got = recall(img, cap, cap2img, ks=ks, folds=folds, chunk_size=chunk)
    size = len(img) // folds
    per_fold = []
    for f in range(folds):
        lo, hi = f * size, (f + 1) * size
        keep = (cap2img >= lo) & (cap2img < hi)
        sim = img[lo:hi].astype(np.float64) @ cap[keep].astype(np.float64).T
        per_fold.append(brute_summary(sim, cap2img[keep] - lo, ks))
    for key in per_fold[0]:
        assert got[key] == pytest.approx(np.mean([p[key] for p in per_fold])), key
    if folds > 1:
        assert [set(p) for p in got["folds"]] == [set(per_fold[0])] * folds
        for g, want in zip(got["folds"], per_fold, strict=True):
            assert g == pytest.approx(want)
    else:
        assert "folds" not in got and got == pytest.approx(recall(img, cap, cap2img, ks=ks, chunk_size=chunk))


# --------------------------------------------------------------------------- tokenizer and vocabulary

WORDS = st.text(alphabet=st.characters(categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8).map(str.lower)
CAPTIONS = st.lists(st.lists(WORDS, min_size=1, max_size=8), min_size=1, max_size=12)


@FAST
@given(st.text(max_size=60))
def test_tokenize_is_idempotent_on_its_own_output(text):
    tokens = tokenize(text)
    assert tokenize(" ".join(tokens)) == tokens
    assert all(t and not any(c.isspace() for c in t) for t in tokens)


@FAST
@given(CAPTIONS, st.integers(1, 3))
def test_vocab_encode_decode_round_trip(captions, min_count):
    vocab = Vocab.build(captions, min_count=min_count)
    for cap in captions:
        ids = vocab.encode(cap)
        decoded = vocab.decode(ids)
        assert [w if w in vocab.index else "<unk>" for w in cap] == decoded
        assert all((i == UNK) == (w not in vocab.index) for w, i in zip(cap, ids, strict=True))
    assert Vocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


@FAST
@given(CAPTIONS, st.booleans(), st.data())
def test_batches_decode_back_to_captions(captions, append_eos, data):
    vocab = Vocab.build(captions)
    flat, lengths = encode_all(vocab, captions, append_eos=append_eos)
    store = CaptionStore(flat, lengths, captions)
    idx = np.array(data.draw(st.lists(st.integers(0, len(captions) - 1), min_size=1, max_size=6)))
    batch = store.batch(idx)
    for row, n, i in zip(batch.tokens.tolist(), batch.lengths.tolist(), idx, strict=True):
        assert vocab.decode(row[:n]) == captions[i] + (["<eos>"] if append_eos else [])
        assert all(t == 0 for t in row[n:])


# --------------------------------------------------------------------------- spec round trips

NAMES = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=20)  # a spec holds no NUL


@st.composite
def raw_specs(draw):
    dim = draw(st.integers(1, 64))
    encoder = draw(st.sampled_from(["gru", "bow"]))
    if encoder == "gru":
        senc = {"type": "gru", "dim_word": draw(st.integers(1, 64)), "bidirectional": draw(st.booleans()),
                "layers": draw(st.integers(1, 3)), "dropout": draw(st.floats(0, 0.9)),
                "word_dropout": draw(st.floats(0, 0.9))}
    else:
        senc = {"type": "bow"} | ({"dim_word": dim} if draw(st.booleans()) else {})
    loss = draw(st.sampled_from([
        {"type": "contrastive", "margin": 0.2},
        {"type": "max_violation", "margin": 0.05, "warmup_epochs": 1.5},
        {"type": "infonce", "temperature": 0.05, "learn_temperature": False},
    ]))
    if "margin" in loss:
        loss["margin"] = draw(st.floats(0, 2, allow_subnormal=False))
    train = {
        "max_epochs": draw(st.integers(1, 100)), "batch_size": draw(st.integers(2, 512)),
        "lr": draw(st.floats(1e-7, 1.0)), "grad_clip": draw(st.floats(0, 10)),
        "lr_schedule": draw(st.sampled_from(["none", "step", "cosine"])), "seed": draw(st.integers(0, 2**32 - 1)),
        "save_freq": draw(st.integers(0, 1000)), "valid_freq": draw(st.integers(0, 1000)),
        "bucket": draw(st.booleans()), "valid_split": draw(st.sampled_from(["dev", "test"])),
    }
    ev = {"split": "test", "metric": {"type": "recall",
                                     "ks": draw(st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True))}}
    if draw(st.booleans()):
        ev["folds"] = draw(st.integers(1, 10))
    return {"name": draw(NAMES), "data": {"type": "precomp", "dir": "vsekit:f8k_mini", "caps_per_image": 5},
            "model": {"dim": dim, "append_eos": draw(st.booleans()), "sentence_encoder": senc},
            "loss": loss, "train": train, "eval": ev, "vocab": {"min_count": draw(st.integers(1, 5))}}


def without_none(d):
    return {k: without_none(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}


@FAST
@given(raw_specs())
def test_spec_round_trips_through_to_dict_and_toml(raw):
    s = spec_mod.from_dict(raw)
    d = s.to_dict()
    assert spec_mod.from_dict(d) == s  # structure(unstructure(spec)) == spec
    text = spec_mod.dumps_toml(d)
    parsed = tomllib.loads(text)
    assert parsed == without_none(json.loads(json.dumps(d)))  # TOML has lists (not tuples) and no null
    assert spec_mod.from_dict(parsed) == s
    assert spec_mod.dumps_toml(parsed) == text


# --------------------------------------------------------------------------- checkpoints


@st.composite
def models(draw):
    words = draw(st.lists(WORDS, min_size=1, max_size=20, unique=True))
    dim = draw(st.integers(2, 12))
    enc = draw(st.sampled_from(["gru", "gru_bi", "bow"]))
    table = ({"type": "bow"} if enc == "bow" else
             {"type": "gru", "dim_word": draw(st.integers(1, 8)), "bidirectional": enc == "gru_bi",
              "layers": draw(st.integers(1, 2))})
    raw = {"data": {"type": "precomp", "dir": "vsekit:f8k_mini"}, "loss": {"type": "contrastive"},
           "model": {"dim": dim, "sentence_encoder": table, "append_eos": draw(st.booleans())}}
    s = spec_mod.from_dict(raw)
    torch.manual_seed(draw(st.integers(0, 1000)))
    model = JointModel.build(s.model.sentence_encoder, s.model.image_encoder, Vocab(words), dim,
                             draw(st.integers(1, 10)), append_eos=s.model.append_eos)
    sentences = draw(st.lists(st.lists(st.sampled_from([*words, "unseen"]), max_size=6), min_size=1, max_size=5))
    return model.eval(), s, sentences


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(models())
def test_save_load_reproduces_embeddings(tmp_path, built):
    model, s, sentences = built
    meta_path = checkpoint.save(tmp_path, "m", model, s.to_dict(), step=1)
    loaded, _meta, rest = checkpoint.load(meta_path)
    assert rest == {} and loaded.vocab == model.vocab and loaded.append_eos == model.append_eos
    feats = np.random.default_rng(0).standard_normal((3, model.dim_image)).astype(np.float32)
    np.testing.assert_array_equal(encode_sentences(loaded, sentences), encode_sentences(model, sentences))
    np.testing.assert_array_equal(encode_images(loaded, feats), encode_images(model, feats))


@FAST
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4), st.integers(1, 4),
       st.floats(0, 0.1), st.booleans())
def test_optimizer_state_round_trip_continues_identically(shapes, steps, weight_decay, amsgrad):
    """What a resume saves of Adam (tensors + JSON) restores it exactly: the next steps are bit-identical."""
    torch.manual_seed(0)

    def make():
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        return params, torch.optim.Adam(params, lr=0.01, weight_decay=weight_decay, amsgrad=amsgrad)

    grads = [[torch.randn(s) for s in shapes] for _ in range(steps + 2)]
    a_params, a_opt = make()
    for g in grads[:steps]:
        for p, gi in zip(a_params, g, strict=True):
            p.grad = gi.clone()
        a_opt.step()
    tensors, info = optimizer_state(a_opt)
    info = json.loads(json.dumps(info))  # as stored in last.json
    b_params, b_opt = make()
    with torch.no_grad():
        for pa, pb in zip(a_params, b_params, strict=True):
            pb.copy_(pa)
    load_optimizer_state(b_opt, {k: v.clone() for k, v in tensors.items()}, info)
    for g in grads[steps:]:
        for params, opt in ((a_params, a_opt), (b_params, b_opt)):
            for p, gi in zip(params, g, strict=True):
                p.grad = gi.clone()
            opt.step()
    for pa, pb in zip(a_params, b_params, strict=True):
        assert torch.equal(pa, pb)
