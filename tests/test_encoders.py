"""Sentence and image encoders against step-by-step references; encode_* invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vsekit.data.batching import collate
from vsekit.data.vocab import UNK, Vocab
from vsekit.image.linear import LinearImageEncoder, MLPImageEncoder
from vsekit.model import JointModel, encode_images, encode_sentences
from vsekit.text.bow import BoWEncoder
from vsekit.text.gru import GRUEncoder

VOCAB_SIZE, DIM_WORD, DIM = 40, 16, 32


def padded_batch(lengths: list[int], seed: int = 0, garbage: bool = True):
    """Random captions; padding positions hold random non-zero tokens when ``garbage`` (must be ignored)."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    tokens = torch.randint(2, VOCAB_SIZE, (len(lengths), T), generator=g)
    if not garbage:
        for i, n in enumerate(lengths):
            tokens[i, n:] = 0
    return tokens, torch.tensor(lengths)


def gru_encoder(layers=1, bidirectional=False, seed=0) -> GRUEncoder:
    torch.manual_seed(seed)
    enc = GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD, layers=layers, bidirectional=bidirectional),
                     VOCAB_SIZE, DIM)
    return enc.double().eval()


def cell_from(rnn: nn.GRU, layer: int, suffix: str = "") -> nn.GRUCell:
    cell = nn.GRUCell(rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1),
                      rnn.hidden_size).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(rnn, f"{name}_l{layer}{suffix}"))
    return cell


def manual_states(cells: list[nn.GRUCell], xs: torch.Tensor) -> torch.Tensor:
    """Run stacked cells over ``xs`` (T, dim_word) one step at a time; returns the top layer's states (T, dim)."""
    seq = xs
    for cell in cells:
        h = torch.zeros(1, cell.hidden_size, dtype=xs.dtype)
        out = []
        for t in range(len(seq)):
            h = cell(seq[t : t + 1], h)
            out.append(h[0])
        seq = torch.stack(out)
    return seq


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_equals_step_by_step_cells(layers):
    enc = gru_encoder(layers=layers)
    lengths = [7, 1, 4, 7, 2, 5]
    tokens, lens = padded_batch(lengths)
    with torch.no_grad():
        got = enc(tokens, lens)
        cells = [cell_from(enc.rnn, k) for k in range(layers)]
        for i, n in enumerate(lengths):
            xs = enc.embed(tokens[i, :n])
            want = manual_states(cells, xs)[-1]
            torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-10)


def test_gru_padding_does_not_leak():
    enc = gru_encoder()
    lengths = [6, 2, 3]
    tokens, lens = padded_batch(lengths, garbage=True)
    clean = tokens.clone()
    for i, n in enumerate(lengths):
        clean[i, n:] = 0
    with torch.no_grad():
        a = enc(tokens, lens)
        b = enc(clean, lens)
        # and each caption alone, unpadded
        alone = torch.stack([enc(tokens[i : i + 1, :n], torch.tensor([n]))[0] for i, n in enumerate(lengths)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, alone, rtol=1e-10, atol=1e-10)


def test_gru_bidirectional_is_mean_of_directions():
    enc = gru_encoder(bidirectional=True)
    lengths = [5, 3, 1, 5]
    tokens, lens = padded_batch(lengths, seed=1)
    with torch.no_grad():
        got = enc(tokens, lens)
        fwd = cell_from(enc.rnn, 0)
        bwd = cell_from(enc.rnn, 0, "_reverse")
        for i, n in enumerate(lengths):
            xs = enc.embed(tokens[i, :n])
            f = manual_states([fwd], xs)[-1]
            b = manual_states([bwd], xs.flip(0))[-1]  # the backward pass starts at the last real word
            torch.testing.assert_close(got[i], (f + b) / 2, rtol=1e-10, atol=1e-10)


def test_gru_word_dropout_drops_whole_words():
    torch.manual_seed(0)
    enc = GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD, word_dropout=0.5), VOCAB_SIZE, DIM)
    x = torch.ones(8, 10, DIM_WORD)
    enc.train()
    y = enc.drop(x)
    per_word = y.amin(dim=2), y.amax(dim=2)
    assert torch.equal(per_word[0], per_word[1])  # each word vector is kept whole or zeroed whole
    assert set(per_word[0].unique().tolist()) == {0.0, 2.0}
    enc.eval()
    assert torch.equal(enc.drop(x), x)


def test_bow_sums_real_words_only():
    torch.manual_seed(0)
    enc = BoWEncoder(BoWEncoder.Config(dim_word=DIM), VOCAB_SIZE, DIM).double()
    lengths = [4, 1, 3]
    tokens, lens = padded_batch(lengths, seed=2, garbage=True)
    with torch.no_grad():
        got = enc(tokens, lens)
        for i, n in enumerate(lengths):
            want = sum(enc.embed.weight[int(t)] for t in tokens[i, :n])
            torch.testing.assert_close(got[i], want, rtol=1e-12, atol=1e-12)
        # order of words does not matter
        rev = tokens.clone()
        for i, n in enumerate(lengths):
            rev[i, :n] = tokens[i, :n].flip(0)
        torch.testing.assert_close(enc(rev, lens), got)


def test_linear_image_encoder():
    torch.manual_seed(0)
    enc = LinearImageEncoder(LinearImageEncoder.Config(), 10, DIM)
    x = torch.randn(4, 10)
    torch.testing.assert_close(enc(x), x @ enc.fc.weight.t() + enc.fc.bias)
    assert torch.count_nonzero(enc.fc.bias) == 0


# --------------------------------------------------------------------------- the joint model


WORDS = ["a", "dog", "runs", "on", "the", "beach", "two", "cats", "sleep", "in", "sun", "man", "rides", "bike",
         "down", "street"]


def joint_model(append_eos=False, n_words=None, encoder="gru", seed=0) -> JointModel:
    torch.manual_seed(seed)
    vocab = Vocab.build([WORDS, WORDS[:5]])
    if encoder == "gru":
        senc = GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD), len(vocab), DIM)
    else:
        senc = BoWEncoder(BoWEncoder.Config(), len(vocab), DIM)
    ienc = LinearImageEncoder(LinearImageEncoder.Config(), 12, DIM)
    return JointModel(senc, ienc, vocab, append_eos=append_eos, n_words=n_words).eval()


SENTENCES = [
    "A dog runs on the beach.",
    "two cats",
    "man rides a bike down the street in the sun",
    "zebra",  # unknown word
    "the dog",
    "a man rides a bike down the street in the sun and a dog runs on the beach",
]


def test_mlp_image_encoder_is_linear_plus_a_residual_mlp():
    torch.manual_seed(0)
    enc = MLPImageEncoder(MLPImageEncoder.Config(hidden=16, dropout=0.5), dim_image=8, dim=4).eval()
    x = torch.randn(5, 8)
    w1, b1, w2, b2 = enc.mlp[0].weight, enc.mlp[0].bias, enc.mlp[3].weight, enc.mlp[3].bias
    by_hand = x @ enc.fc.weight.T + enc.fc.bias + torch.nn.functional.gelu(x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(enc(x), by_hand)  # eval: no dropout
    bound = (6.0 / (8 + 4)) ** 0.5  # the linear part keeps the reference's Xavier init and zero bias
    assert enc.fc.weight.abs().max() <= bound and not enc.fc.bias.any()
    enc.train()
    assert not torch.equal(enc(x), enc(x))  # dropout acts in training


@pytest.mark.parametrize("encoder", ["gru", "bow"])
def test_encode_sentences_invariant_to_batch_size_and_order(encoder):
    model = joint_model(encoder=encoder)
    ref = encode_sentences(model, SENTENCES, batch_size=512)
    assert ref.shape == (len(SENTENCES), DIM) and ref.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-6)
    for bs in (1, 2, 5):
        np.testing.assert_allclose(encode_sentences(model, SENTENCES, batch_size=bs), ref, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(SENTENCES))
    shuffled = encode_sentences(model, [SENTENCES[i] for i in perm], batch_size=3)
    np.testing.assert_allclose(shuffled, ref[perm], atol=1e-6)
    # each sentence alone
    alone = np.concatenate([encode_sentences(model, [s]) for s in SENTENCES])
    np.testing.assert_allclose(alone, ref, atol=1e-6)


def test_encode_sentences_matches_manual_loop_with_eos():
    """The reference feeds k words then one <eos> step (index 0); check it against GRUCell."""
    model = joint_model(append_eos=True).double()
    senc = model.sentence_encoder
    cell = cell_from(senc.rnn, 0)
    got = encode_sentences(model, SENTENCES)
    for sent, vec in zip(SENTENCES, got, strict=True):
        from vsekit.data.tokenize import tokenize

        ids = torch.tensor([*model.vocab.encode(tokenize(sent)), 0])
        with torch.no_grad():
            h = manual_states([cell], senc.embed(ids))[-1]
        np.testing.assert_allclose(vec, (h / h.norm()).numpy(), atol=1e-6)


def test_encode_sentences_tokens_and_unknowns():
    model = joint_model()
    a = encode_sentences(model, ["The Dog runs."])
    b = encode_sentences(model, [["the", "dog", "runs", "."]])
    np.testing.assert_allclose(a, b, atol=1e-7)
    # unknown words all map to <unk> (token lists go through the model's tokenizer too: "<unk>" is 3 tokens)
    c = encode_sentences(model, [["zebra", "dog"], ["okapi", "dog"], ["unk", "dog"]])
    np.testing.assert_allclose(c[0], c[1], atol=1e-7)
    np.testing.assert_allclose(c[0], c[2], atol=1e-7)


def test_encode_sentences_refuses_a_bare_string():
    from vsekit.errors import DataError

    with pytest.raises(DataError, match="expected a list of captions"):
        encode_sentences(joint_model(), "a dog runs")


def test_n_words_cutoff_maps_to_unk():
    model = joint_model(n_words=5)
    rare = model.vocab.words[7]
    common = model.vocab.words[3]
    assert model.vocab.index[rare] >= 5
    a = encode_sentences(model, [[common, rare]])
    b = encode_sentences(model, [[common, "neverseen"]])
    np.testing.assert_allclose(a, b, atol=1e-7)
    full = joint_model(n_words=None)
    assert not np.allclose(encode_sentences(full, [[common, rare]]), encode_sentences(full, [[common, "zz"]]))
    assert model.vocab.encode([rare], n_words=5) == [UNK]


def test_encode_empty_inputs():
    model = joint_model()
    assert encode_sentences(model, []).shape == (0, DIM)
    v = encode_sentences(model, [""])
    assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-6


def test_encode_images_unit_norm_and_batch_invariant():
    model = joint_model()
    feats = np.random.default_rng(0).standard_normal((9, 12)).astype(np.float32)
    a = encode_images(model, feats)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(encode_images(model, feats, batch_size=2), a, atol=1e-6)
    np.testing.assert_allclose(encode_images(model, torch.from_numpy(feats[::-1].copy())), a[::-1], atol=1e-6)
    with torch.no_grad():
        want = model.image_encoder(torch.from_numpy(feats))
    np.testing.assert_allclose(a, (want / want.norm(dim=1, keepdim=True)).numpy(), atol=1e-6)
    from vsekit.errors import DataError

    with pytest.raises(DataError, match=r"expected shape \(N, 12\)"):
        encode_images(model, feats[:, :5])


def test_training_mode_restored():
    model = joint_model().train()
    encode_sentences(model, ["a dog"])
    encode_images(model, np.zeros((1, 12), np.float32))
    assert model.training


def test_forward_embeddings_normalized():
    model = joint_model()
    tokens, lens = padded_batch([3, 2], seed=4)
    tokens = tokens.clamp(max=len(model.vocab) - 1)
    from vsekit.text.batch import TextBatch

    im, s = model(TextBatch(tokens, lens), torch.randn(2, 12))
    torch.testing.assert_close(im.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(s.norm(dim=1), torch.ones(2))


def test_collate_batch_through_encoder_matches_padded_batch():
    """collate + encoder on a flat store gives the same vectors as hand-built padded tokens."""
    enc = gru_encoder()
    caps = [[3, 4, 5], [6], [7, 8]]
    flat = np.array([t for c in caps for t in c])
    b = collate(flat, np.array([0, 3, 4]), np.array([3, 1, 2]))
    with torch.no_grad():
        got = enc(b.tokens, b.lengths)
        for i, c in enumerate(caps):
            torch.testing.assert_close(got[i], enc(torch.tensor([c]), torch.tensor([len(c)]))[0])
