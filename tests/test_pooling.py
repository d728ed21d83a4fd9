"""Pooling operators (vsekit.pooling) against literal loops written from the equations of the papers.

The loops below are written from Chen et al., CVPR 2021 ("Learning the Best Pooling Strategy for
Visual Semantic Embedding", sec. 3: sort each dimension's values over the K items in descending order,
weight the k-th largest by theta_k, theta = softmax over the positions of scores made by a bidirectional
GRU over sine position encodings and a linear layer; the authors' code divides the scores by a
temperature 0.1 and averages the two directions) and from the GRU equations as PyTorch documents them:
r = s(W_ir x + b_ir + W_hr h + b_hr), z = s(W_iz x + b_iz + W_hz h + b_hz),
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h. Only the GRU's weights are taken
from the module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vsekit.pooling import GPO, mean_pool, sine_positions


def literal_positions(n: int, d: int) -> list[list[float]]:
    return [[math.sin(k / 10000 ** (i / d)) if i % 2 == 0 else math.cos(k / 10000 ** ((i - 1) / d))
             for i in range(d)] for k in range(n)]


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def literal_gru(xs: list[list[float]], w_ih, w_hh, b_ih, b_hh) -> list[list[float]]:
    """The states of one GRU direction over xs, one loop per gate unit."""
    hid = len(b_ih) // 3
    h = [0.0] * hid
    out = []
    for x in xs:
        gi = [sum(w_ih[j][c] * x[c] for c in range(len(x))) + b_ih[j] for j in range(3 * hid)]
        gh = [sum(w_hh[j][c] * h[c] for c in range(hid)) + b_hh[j] for j in range(3 * hid)]
        new = []
        for u in range(hid):
            r = sigmoid(gi[u] + gh[u])
            z = sigmoid(gi[hid + u] + gh[hid + u])
            nn_ = math.tanh(gi[2 * hid + u] + r * gh[2 * hid + u])
            new.append((1 - z) * nn_ + z * h[u])
        h = new
        out.append(h)
    return out


def literal_gpo(items: list[list[float]], gpo: GPO) -> list[float]:
    """GPO of one set of n valid items (n x D lists), written from the paper."""
    n, d = len(items), len(items[0])
    p = {k: v.detach().double().tolist() for k, v in gpo.gru.named_parameters()}
    pe = literal_positions(n, gpo.d_pe)
    fwd = literal_gru(pe, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
    bwd = literal_gru(pe[::-1], p["weight_ih_l0_reverse"], p["weight_hh_l0_reverse"],
                      p["bias_ih_l0_reverse"], p["bias_hh_l0_reverse"])[::-1]
    w = gpo.linear.weight.detach().double().tolist()[0]
    scores = [sum(w[u] * (fwd[k][u] + bwd[k][u]) / 2 for u in range(gpo.d_hidden)) for k in range(n)]
    top = max(s / gpo.temperature for s in scores)
    e = [math.exp(s / gpo.temperature - top) for s in scores]
    theta = [v / sum(e) for v in e]
    out = []
    for j in range(d):
        column = sorted((items[k][j] for k in range(n)), reverse=True)
        out.append(sum(theta[k] * column[k] for k in range(n)))
    return out


def test_sine_positions_match_the_formula():
    assert np.allclose(sine_positions(7, 8).numpy(), np.array(literal_positions(7, 8)), atol=1e-6)


def test_mean_pool_matches_a_loop_over_valid_items():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=bool)
    got = mean_pool(torch.from_numpy(x), torch.from_numpy(mask)).numpy()
    for b in range(3):
        valid = [k for k in range(5) if mask[b, k]]
        for j in range(4):
            assert got[b, j] == pytest.approx(sum(float(x[b, k, j]) for k in valid) / len(valid), abs=1e-6)
    assert np.allclose(mean_pool(torch.from_numpy(x)).numpy(), x.mean(1), atol=1e-6)


@pytest.mark.parametrize("d_pe,d_hidden", [(32, 32), (6, 5)])
def test_gpo_matches_the_papers_equations(d_pe, d_hidden):
    torch.manual_seed(d_pe)
    gpo = GPO(d_pe, d_hidden).double()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3))
    # variable K: 6, 3 (a prefix), 2 (scattered), 1 valid items
    mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=bool)
    x[~mask] = 100.0  # padding must not take part, whatever it holds
    got = gpo(torch.from_numpy(x), torch.from_numpy(mask)).detach().numpy()
    for b in range(4):
        items = [x[b, k].tolist() for k in range(6) if mask[b, k]]
        assert got[b] == pytest.approx(literal_gpo(items, gpo), abs=1e-9)


def test_gpo_weights_sum_to_one_and_are_zero_past_the_length():
    gpo = GPO()
    w = gpo.weights(torch.tensor([4, 1, 2]), 5).detach()
    assert torch.allclose(w.sum(1), torch.ones(3), atol=1e-6)
    assert (w[0, 4:] == 0).all() and (w[1, 1:] == 0).all() and (w[2, 2:] == 0).all()


def test_gpo_refuses_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match="mask"):
        GPO()(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))


# --------------------------------------------------------------------------
# the GRU sentence encoder's pooling option


def gru_encoder(pooling: str, impl: str = "auto", bidirectional: bool = False):
    from vsekit.text.gru import GRUEncoder

    torch.manual_seed(0)
    cfg = GRUEncoder.Config(dim_word=6, impl=impl, pooling=pooling, bidirectional=bidirectional)
    return GRUEncoder(cfg, 20, 5).double().eval()


def word_states(enc, tokens: torch.Tensor, lengths: torch.Tensor) -> list[list[list[float]]]:
    """Each caption's word states (its first lengths[b] positions), one direction after the other averaged."""
    out = []
    p = {k: v.detach().tolist() for k, v in enc.rnn.named_parameters()}
    for b in range(len(tokens)):
        xs = enc.embed.weight.detach()[tokens[b, : lengths[b]]].tolist()
        states = literal_gru(xs, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"])
        if enc.config.bidirectional:
            back = literal_gru(xs[::-1], p["weight_ih_l0_reverse"], p["weight_hh_l0_reverse"],
                               p["bias_ih_l0_reverse"], p["bias_hh_l0_reverse"])[::-1]
            states = [[(f + r) / 2 for f, r in zip(fs, rs, strict=True)] for fs, rs in zip(states, back, strict=True)]
        out.append(states)
    return out


TOKENS = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0], [9, 0, 0, 0]])
LENGTHS = torch.tensor([4, 2, 1])


@pytest.mark.parametrize("impl,bidirectional", [("packed", False), ("padded", False), ("auto", False),
                                                ("auto", True)])
def test_gru_mean_and_gpo_pool_the_word_states(impl, bidirectional):
    for pooling in ("mean", "gpo"):
        enc = gru_encoder(pooling, impl, bidirectional)
        got = enc(TOKENS, LENGTHS).detach().numpy()
        for b, states in enumerate(word_states(enc, TOKENS, LENGTHS)):
            if pooling == "mean":
                want = [sum(s[u] for s in states) / len(states) for u in range(5)]
            else:
                want = literal_gpo(states, enc.gpo)
            assert got[b] == pytest.approx(want, abs=1e-9), (pooling, b)


def test_gru_last_is_unchanged_and_has_no_pooling_parameters():
    from vsekit.text.gru import GRUEncoder

    enc = gru_encoder("last")
    assert GRUEncoder.Config().pooling == "last"
    assert not any(k.startswith("gpo") for k in enc.state_dict())
    got = enc(TOKENS, LENGTHS).detach().numpy()
    for b, states in enumerate(word_states(enc, TOKENS, LENGTHS)):
        assert got[b] == pytest.approx(states[-1], abs=1e-9)
    assert any(k.startswith("gpo.") for k in gru_encoder("gpo").state_dict())


def test_gru_fused_with_pooling_is_refused():
    from vsekit.text.gru import GRUEncoder

    cfg = GRUEncoder.Config(impl="fused", pooling="gpo")
    assert GRUEncoder.check_config(cfg, 8)[0][0] == "impl"
    with pytest.raises(ValueError, match="fused"):
        GRUEncoder(cfg, 10, 8)
