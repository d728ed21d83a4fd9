"""The GRU encoder's implementations (fused, padded) against nn.GRU on a packed sequence; the fused layer's
hand-written backward against numerical gradients; checkpoints across implementations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_spec_text

from vsekit import checkpoint
from vsekit.model import encode_sentences
from vsekit.spec import build_component
from vsekit.text._gru_fused import gru_layer, packing
from vsekit.text.gru import GRUEncoder

VOCAB, DIM_WORD, DIM = 30, 6, 5


def encoder(impl: str, layers: int = 1, **kw) -> GRUEncoder:
    torch.manual_seed(0)
    enc = GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD, layers=layers, impl=impl, **kw), VOCAB, DIM).double()
    with torch.no_grad():  # recurrent biases and weights large enough that every gate matters
        for p in enc.rnn.parameters():
            p.uniform_(-0.6, 0.6)
    return enc


def run(enc: GRUEncoder, lengths: list[int], seed: int = 0):
    """Output and every parameter's gradient of a weighted sum of the outputs; padding holds garbage tokens."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (len(lengths), max(max(lengths), 1) + 1), generator=g)
    out = enc(tokens, torch.tensor(lengths))
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    enc.zero_grad()
    (out * w).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in enc.named_parameters()}


LENGTHS = [[3, 7, 1, 7, 2, 5, 1], [4, 4, 4, 4], [1], [1, 1, 1], [0, 3, 2]]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("impl", ["fused", "padded"])
@pytest.mark.parametrize("lengths", LENGTHS, ids=lambda ls: "-".join(map(str, ls)))
def test_impl_equals_packed_outputs_and_gradients(impl, layers, lengths):
    want, want_grads = run(encoder("packed", layers), lengths)
    got, got_grads = run(encoder(impl, layers), lengths)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got_grads.keys() == want_grads.keys()
    for k in want_grads:
        torch.testing.assert_close(got_grads[k], want_grads[k], rtol=1e-10, atol=1e-12, msg=k)


def test_fused_float32_and_inference_path():
    enc64 = encoder("fused", 2)
    enc32 = encoder("fused", 2).float()
    ref = encoder("packed", 2).float()
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(1, VOCAB, (9, 8), generator=g)
    lengths = torch.tensor([8, 1, 5, 5, 2, 8, 3, 7, 1])
    with torch.inference_mode():
        a, b = enc32(tokens, lengths), ref(tokens, lengths)
        c = enc64(tokens, lengths)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.double(), c, rtol=1e-5, atol=1e-6)
    assert enc32(tokens, lengths).requires_grad  # the autograd path when parameters want gradients


@pytest.mark.parametrize("last", [True, False])
def test_fused_layer_gradcheck(last):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2, 4, 1, 4, 3])
    pk = packing(lengths, 4, torch.device("cpu"))
    d, h = 3, 4

    def p(*shape):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) - 0.5).requires_grad_()

    x, w_ih, w_hh, b_ih, b_hh = p(pk.n, d), p(3 * h, d), p(3 * h, h), p(3 * h), p(3 * h)
    assert torch.autograd.gradcheck(lambda *a: gru_layer(*a, pk=pk, last=last), (x, w_ih, w_hh, b_ih, b_hh))


def test_word_dropout_draws_match_packed():
    lengths = [3, 7, 1, 7, 2]
    outs = []
    for impl in ("packed", "fused", "padded"):
        enc = encoder(impl, word_dropout=0.5).train()
        torch.manual_seed(5)
        outs.append(run(enc, lengths))
    for got, grads in outs[1:]:
        torch.testing.assert_close(got, outs[0][0], rtol=1e-12, atol=1e-12)
        for k in grads:
            torch.testing.assert_close(grads[k], outs[0][1][k], rtol=1e-10, atol=1e-12)


def test_auto_and_config_checks():
    assert encoder("auto").impl_for(torch.device("cpu")) == "fused"
    assert encoder("auto").impl_for(torch.device("cuda")) == "packed"
    bi = GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD, bidirectional=True), VOCAB, DIM)
    assert bi.impl_for(torch.device("cpu")) == "packed"
    for impl in ("fused", "padded"):
        with pytest.raises(ValueError, match="one direction"):
            GRUEncoder(GRUEncoder.Config(dim_word=DIM_WORD, bidirectional=True, impl=impl), VOCAB, DIM)
        cfg = GRUEncoder.Config(dim_word=DIM_WORD, bidirectional=True, impl=impl)
        assert [f for f, _ in GRUEncoder.check_config(cfg, DIM)] == ["impl"]
    with pytest.raises(Exception, match="expected one of 'auto', 'packed', 'padded', 'fused'"):
        build_component("sentence_encoder", {"type": "gru", "impl": "cudnn"}, "model.sentence_encoder", ".")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert encoder("fused").impl_for(torch.device("cpu")) == "padded"


@pytest.mark.parametrize("stored_impl", [None, "fused"])
def test_packed_checkpoint_loads_into_fused(tmp_path, small_data, stored_impl):
    """A checkpoint of a packed-GRU model (or one written before ``impl`` existed) loads with the fused GRU."""
    from vsekit.data.vocab import Vocab
    from vsekit.model import JointModel
    from vsekit.spec import load as load_spec

    sentences = ["a dog runs on the beach", "two children play in the snow .", "zebra", "a b c d e f g h"]
    path = tmp_path / "spec.toml"
    path.write_text(tiny_spec_text(small_data, model__sentence_encoder={"type": "gru", "dim_word": 16,
                                                                        "layers": 2, "impl": "packed"}))
    s = load_spec(path)
    torch.manual_seed(1)
    vocab = Vocab.build([c.split() for c in sentences])
    model = JointModel.build(s.model.sentence_encoder, s.model.image_encoder, vocab, s.model.dim, 20).eval()
    meta_path = checkpoint.save(tmp_path / "c", "m", model, s.to_dict())
    meta = json.loads(meta_path.read_text())
    senc = meta["spec"]["model"]["sentence_encoder"]
    if stored_impl is None:
        senc.pop("impl")
    else:
        senc["impl"] = stored_impl
    meta_path.write_text(json.dumps(meta))
    loaded, _, _ = checkpoint.load(meta_path)
    enc = loaded.sentence_encoder
    assert enc.config.impl == (stored_impl or "auto") and enc.impl_for(torch.device("cpu")) == "fused"
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert "sentence_encoder.rnn.weight_hh_l1" in loaded.state_dict()
    np.testing.assert_allclose(encode_sentences(loaded, sentences), encode_sentences(model, sentences),
                               rtol=1e-5, atol=1e-6)
