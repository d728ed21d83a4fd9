"""A prototype single-layer GRU with a hand-written backward, for the ``proto_gru`` case of bench_train.py.

Not used by vsekit: it measures what a GRU that does only the bound's GEMMs
(plus its pointwise maths) reaches, to decide whether ``vsekit/text/gru.py``
should get one. Same maths and parameters as ``torch.nn.GRU`` (gate order r,
z, n; ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``; ``h' = (1 - z) n + z h``),
so it reads an ``nn.GRU``'s weights and is checked against it
(``python benchmarks/_gru_proto.py``).

What it avoids, compared with ``nn.GRU`` on a packed sequence on CPU:

* no per-step slice of the input projection (whose backward builds a zero
  tensor of the whole (tokens, 3*dim) projection at every step and adds it up:
  O(steps x tokens) memory traffic);
* the weight gradients dW_hh and dW_ih as one GEMM each over all steps (not one
  GEMM plus one 12 MB ``add_`` per step);
* the autograd graph of ~20 nodes per step: one node for the whole layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _GRULayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: list[int], w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        """x: (T, B, D) time-major, rows sorted longest first; sizes[t]: rows still running at step t.
        Returns hs (T + 1, B, H): hs[t + 1, :sizes[t]] is the state after step t (other rows: undefined)."""
        t_steps, b, d = x.shape
        h = w_hh.shape[1]
        gi = torch.addmm(b_ih, x.reshape(t_steps * b, d), w_ih.t()).view(t_steps, b, 3 * h)
        hs = x.new_zeros(t_steps + 1, b, h)
        rz = x.new_empty(t_steps, b, 2 * h)
        n = x.new_empty(t_steps, b, h)
        ghn = x.new_empty(t_steps, b, h)
        gh = x.new_empty(b, 3 * h)
        for t, bt in enumerate(sizes):
            hp = hs[t, :bt]
            g = gh[:bt]
            torch.addmm(b_hh, hp, w_hh.t(), out=g)
            torch.add(gi[t, :bt, : 2 * h], g[:, : 2 * h], out=rz[t, :bt]).sigmoid_()
            ghn[t, :bt] = g[:, 2 * h :]
            r, z = rz[t, :bt, :h], rz[t, :bt, h:]
            torch.addcmul(gi[t, :bt, 2 * h :], r, g[:, 2 * h :], out=n[t, :bt]).tanh_()
            torch.lerp(n[t, :bt], hp, z, out=hs[t + 1, :bt])  # n + z * (h - n)
        ctx.sizes = sizes
        ctx.save_for_backward(x, w_ih, w_hh, hs, rz, n, ghn)
        return hs

    @staticmethod
    def backward(ctx: Any, dhs: torch.Tensor) -> tuple[Any, ...]:
        x, w_ih, w_hh, hs, rz, n, ghn = ctx.saved_tensors
        sizes = ctx.sizes
        t_steps, b, d = x.shape
        h = w_hh.shape[1]
        dgi = x.new_zeros(t_steps, b, 3 * h)  # pre-activation gradients; rows not running stay 0
        dgh = x.new_zeros(t_steps, b, 3 * h)
        dh = dhs[t_steps].clone()
        for t in range(t_steps - 1, -1, -1):
            bt = sizes[t]
            dh[:bt] += dhs[t + 1, :bt] if t + 1 < t_steps else 0  # outputs read at earlier steps
            g = dh[:bt]
            r, z, nt, hp = rz[t, :bt, :h], rz[t, :bt, h:], n[t, :bt], hs[t, :bt]
            da_n = g * (1 - z) * (1 - nt * nt)                      # through tanh
            dgi[t, :bt, 2 * h :] = da_n
            dgh[t, :bt, 2 * h :] = da_n * r
            dgi[t, :bt, :h] = da_n * ghn[t, :bt] * r * (1 - r)        # reset gate
            dgi[t, :bt, h : 2 * h] = g * (hp - nt) * z * (1 - z)      # update gate
            dgh[t, :bt, : 2 * h] = dgi[t, :bt, : 2 * h]
            dh[:bt] = torch.addmm(g * z, dgh[t, :bt], w_hh)
        flat_gi = dgi.view(t_steps * b, 3 * h)
        flat_gh = dgh.view(t_steps * b, 3 * h)
        dx = (flat_gi @ w_ih).view(t_steps, b, d)
        dw_ih = flat_gi.t() @ x.reshape(t_steps * b, d)
        dw_hh = flat_gh.t() @ hs[:t_steps].reshape(t_steps * b, h)
        return dx, None, dw_ih, dw_hh, flat_gi.sum(0), flat_gh.sum(0)


def gru_last_state(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The state after each caption's last word. x: (B, T, D) batch-first, lengths (B,) >= 1."""
    if rnn.num_layers != 1 or rnn.bidirectional or not rnn.batch_first:
        raise ValueError("the prototype covers a single-layer, one-direction, batch_first GRU")
    lengths = lengths.cpu().clamp(min=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    lens = lengths[order]
    t_steps = int(lens[0])
    xs = x[order, :t_steps].transpose(0, 1).contiguous()  # (T, B, D), longest first
    sizes = (lens[None, :] > torch.arange(t_steps)[:, None]).sum(1).tolist()  # sizes[t] = #(length > t)
    hs = _GRULayer.apply(xs, sizes, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
    last = hs[lens, torch.arange(len(lens))]
    out = torch.empty_like(last)
    out[order] = last
    return out


def proto_encode(enc: Any) -> Any:
    """An ``encode(batch)`` for vsekit's GRUEncoder that runs the prototype layer on the encoder's weights."""

    def encode(batch: Any) -> torch.Tensor:
        return gru_last_state(enc.rnn, enc.drop(enc.embed(batch.tokens)), batch.lengths)

    return encode


def _check() -> None:
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    rnn = nn.GRU(7, 5, batch_first=True).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.5, 0.5)
    lengths = torch.tensor([3, 6, 1, 6, 2, 4])
    x = torch.randn(6, 6, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64)
    _, ref = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    (ref[-1] * w).sum().backward()
    want = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    x.grad = None
    rnn.zero_grad()
    out = gru_last_state(rnn, x, lengths)
    (out * w).sum().backward()
    got = [x.grad] + [p.grad for p in rnn.parameters()]
    assert torch.allclose(out, ref[-1], atol=1e-12), (out - ref[-1]).abs().max()
    for a, b_ in zip(got, want):
        assert torch.allclose(a, b_, atol=1e-10), (a - b_).abs().max()
    print("prototype GRU: forward and all gradients equal torch.nn.GRU's (float64, packed, unsorted lengths)")


if __name__ == "__main__":
    _check()
