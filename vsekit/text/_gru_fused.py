"""A one-direction GRU layer with its backward written out, on a packed (time-major, longest-first) layout.

Used by :class:`vsekit.text.gru.GRUEncoder` with ``impl = "fused"`` (the
default on CPU for one-direction GRUs). Same maths and parameters as
``torch.nn.GRU`` (gate order r, z, n; ``r, z = sigmoid(x W_ir,z + b_ir,z +
h W_hr,z + b_hr,z)``, ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``,
``h' = (1 - z) n + z h``); it reads the ``nn.GRU``'s own parameter tensors.
Plain torch ops, so any device and floating dtype.

Compared with ``nn.GRU`` on a ``PackedSequence`` on CPU, the layer is one
autograd node: the input projection is one GEMM over the real tokens, the
recurrence does two GEMMs per step over the captions still running, the
backward does one GEMM per step (dh) and dX, dW_ih, dW_hh as one GEMM each
over all steps; the pointwise gate derivatives are computed once, over all
steps, in a few large kernels.

Layout ("packed", as ``PackedSequence.data``): the rows of step t are the
``sizes[t]`` longest captions (sorted longest first), at rows
``starts[t] : starts[t] + sizes[t]``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import attrs
import torch


@attrs.frozen
class Packing:
    """Where each caption's steps sit in the packed layout (built once per batch, shared by all layers)."""

    sizes: list[int]            # sizes[t]: captions of length > t
    starts: list[int]           # starts[t]: first packed row of step t
    n: int                      # packed rows (real tokens)
    order: torch.Tensor         # sorted position -> batch row (longest first, stable)
    inverse: torch.Tensor       # batch row -> sorted position
    token_index: torch.Tensor   # packed row -> flat index into the (B, T) padded batch
    prev_index: torch.Tensor    # packed row of a step t >= 1 (rows sizes[0]:) -> packed row of its previous state
    last_index: torch.Tensor    # sorted position -> packed row of its last step


def packing(lengths: torch.Tensor, t_max: int, device: torch.device) -> Packing:
    """The packed layout of a batch of captions with these ``lengths`` (>= 1) in a (B, t_max) padded batch."""
    lengths = lengths.to("cpu", torch.int64)
    b = len(lengths)
    lens, order = torch.sort(lengths, descending=True, stable=True)
    t_steps = int(lens[0])
    counts = torch.bincount(lens, minlength=t_steps + 1)
    sizes_t = b - torch.cumsum(counts, 0)[:t_steps]                  # #(length > t)
    starts_t = torch.cumsum(sizes_t, 0) - sizes_t
    rows = torch.arange(b)
    mask = rows[None, :] < sizes_t[:, None]                            # (T, B): sorted row i runs at step t
    token_index = (order[None, :] * t_max + torch.arange(t_steps)[:, None])[mask]
    prev_index = (starts_t[:-1, None] + rows[None, :])[mask[1:]]
    last_index = starts_t[lens - 1] + rows
    inverse = torch.empty_like(order)
    inverse[order] = rows
    return Packing(sizes=sizes_t.tolist(), starts=starts_t.tolist(), n=int(sizes_t.sum()),
                   order=order.to(device), inverse=inverse.to(device), token_index=token_index.to(device),
                   prev_index=prev_index.to(device), last_index=last_index.to(device))


_WORKSPACES = threading.local()
_WORKSPACE_MAX = 1 << 25  # elements (128 MiB in float32) of the largest buffer kept


def _workspace(like: torch.Tensor) -> Callable[[str, tuple[int, ...]], torch.Tensor]:
    """Scratch buffers kept between calls (per thread, device and dtype), so the large temporaries of every
    step do not cost fresh pages. Only for tensors that do not outlive the call that takes them."""
    store = _WORKSPACES.__dict__.setdefault((like.device, like.dtype), {})

    def get(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        numel = math.prod(shape)
        if numel > _WORKSPACE_MAX:  # rare, very large batches: not worth keeping
            return like.new_empty(shape)
        buf = store.get(name)
        if buf is None or buf.numel() < numel:
            buf = store[name] = like.new_empty(int(numel * 1.25) + 1024)
        return buf[:numel].view(shape)

    return get


def _input_projection(x: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """x W_ih^T + b_ih, with b_hh's r and z parts folded in (they add to the same pre-activations)."""
    h = w_ih.shape[0] // 3
    bias = b_ih.clone()
    bias[: 2 * h] += b_hh[: 2 * h]
    if out is None:
        return torch.addmm(bias, x, w_ih.t())
    return torch.addmm(bias, x, w_ih.t(), out=out)


def _recurrence(act: torch.Tensor, pk: Packing, w_hh: torch.Tensor, b_hh: torch.Tensor, states: torch.Tensor | None,
                ghn_all: torch.Tensor | None) -> torch.Tensor:
    """Run the recurrence in place: ``act`` (n, 3H) holds the input pre-activations and ends holding r, z, n.

    With ``states`` ((n, H), packed) every step's state is written there and returned (and the recurrent
    n-part pre-activations into ``ghn_all``); without, only the last state of each caption is kept (returned
    as (B, H), sorted order). Step 0 starts from h = 0: no recurrent product (h W_hh + b_hh = b_hh)."""
    h = w_hh.shape[1]
    b = pk.sizes[0]
    w_rz, w_n = w_hh[: 2 * h].t(), w_hh[2 * h :].t()
    b_n = b_hh[2 * h :]
    if states is None:
        hbuf = act.new_empty(b, h)
        ghn_buf = act.new_empty(b, h)
    for t, bt in enumerate(pk.sizes):
        s = pk.starts[t]
        a = act[s : s + bt]
        rz, nn_ = a[:, : 2 * h], a[:, 2 * h :]
        if states is None:
            hp = out = hbuf[:bt]
            ghn = ghn_buf[:bt]
        else:
            hp = states[pk.starts[t - 1] : pk.starts[t - 1] + bt]  # (unused at t = 0)
            ghn = ghn_all[s : s + bt]  # type: ignore[index]
            out = states[s : s + bt]
        if t == 0:
            rz.sigmoid_()
            if states is None:
                nn_.addcmul_(rz[:, :h], b_n).tanh_()
            else:
                ghn.copy_(b_n.expand_as(ghn))
                nn_.addcmul_(rz[:, :h], ghn).tanh_()
            torch.addcmul(nn_, rz[:, h:], nn_, value=-1, out=out)  # (1 - z) n
            continue
        torch.addmm(b_n, hp, w_n, out=ghn)
        rz.addmm_(hp, w_rz).sigmoid_()
        nn_.addcmul_(rz[:, :h], ghn).tanh_()
        torch.lerp(nn_, hp, rz[:, h:], out=out)  # n + z (h - n)
    return hbuf if states is None else states


class _GRULayerFn(torch.autograd.Function):
    """One GRU layer with its fused backward; ``apply(plan, x, w_ih, w_hh, b_ih, b_hh)`` with ``plan = (pk, last)``."""

    @staticmethod
    def forward(ctx: Any, plan: tuple[Packing, bool], x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        pk, last = plan
        w_ih, w_hh, b_ih, b_hh = params  # nn.GRU's order
        h = w_hh.shape[1]
        act = _input_projection(x, w_ih, b_ih, b_hh)
        states = act.new_empty(pk.n, h)
        ghn = act.new_empty(pk.n, h)
        _recurrence(act, pk, w_hh, b_hh, states, ghn)
        ctx.pk, ctx.last = pk, last
        ctx.save_for_backward(x, w_ih, w_hh, act, ghn, states)
        if last:
            return states.index_select(0, pk.last_index)
        return states

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        x, w_ih, w_hh, act, ghn, states = ctx.saved_tensors
        pk: Packing = ctx.pk
        n, h = ghn.shape
        b = pk.sizes[0]
        ws = _workspace(act)
        r, z, nn_ = act[:, :h], act[:, h : 2 * h], act[:, 2 * h :]
        # the gate derivatives of every step at once: the gradient g reaching a step's state gives
        # dgh = g * coef[:, :3] (recurrent pre-activations r, z, n) and dgi = [dgh_r, dgh_z, g * coef[:, 3]]
        coef = ws("coef", (n, 4, h))
        c_r, c_z, c_nr, c_n = coef.unbind(1)
        torch.addcmul(torch.ones((), dtype=act.dtype, device=act.device), nn_, nn_, value=-1, out=c_n)
        c_n.addcmul_(z, c_n, value=-1)                            # (1 - z)(1 - n^2): n's pre-activation
        torch.mul(c_n, r, out=c_nr)                                # ... times r: its recurrent part
        torch.addcmul(r, r, r, value=-1, out=c_r)                  # r (1 - r)
        c_r.mul_(ghn).mul_(c_n)                                    # reset gate
        torch.sub(states, nn_, out=c_z)                        # h' - n = z (h - n)
        c_z.addcmul_(z, c_z, value=-1)                             # z (1 - z)(h - n): update gate
        coef_h = coef[:, :3]
        # g: the gradient reaching each step's state, packed like the states
        g = ws("g", (n, h))
        if ctx.last:  # a caption's own gradient enters at its last step; the recurrence fills the other rows
            g.index_copy_(0, pk.last_index, dout)
        else:
            g.copy_(dout)
        dg = ws("dg", (n, 3 * h))  # dgh, then (its n part replaced) dgi
        for t in range(len(pk.sizes) - 1, -1, -1):
            bt, s = pk.sizes[t], pk.starts[t]
            gt = g[s : s + bt]
            dgh_t = dg[s : s + bt]
            torch.mul(coef_h[s : s + bt], gt[:, None, :], out=dgh_t.view(bt, 3, h))
            if t > 0:
                dst = g[pk.starts[t - 1] : pk.starts[t - 1] + bt]
                if ctx.last:  # these rows go on to step t: no gradient of their own
                    torch.mul(gt, z[s : s + bt], out=dst)
                else:
                    dst.addcmul_(gt, z[s : s + bt])
                dst.addmm_(dgh_t, w_hh)
        need = ctx.needs_input_grad[1:]  # (plan,) x, w_ih, w_hh, b_ih, b_hh
        dx = dw_ih = dw_hh = db_ih = db_hh = db_hn = None
        if need[2]:  # step 0's previous state is 0: only the rows of steps >= 1
            hprev = torch.index_select(states, 0, pk.prev_index, out=ws("hprev", (n - b, h)))
            dw_hh = dg[b:].t() @ hprev
        if need[4]:
            db_hn = dg[:, 2 * h :].sum(0)
        torch.mul(g, c_n, out=dg[:, 2 * h :])                      # dg is now dgi
        if need[0]:
            dx = dg @ w_ih
        if need[1]:
            dw_ih = dg.t() @ x
        if need[3] or need[4]:
            db_ih = dg.sum(0)
        if need[4]:
            db_hh = torch.cat([db_ih[: 2 * h], db_hn])
        return None, dx, dw_ih, dw_hh, db_ih if need[3] else None, db_hh


def gru_layer(x: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor, *,
              pk: Packing, last: bool) -> torch.Tensor:
    """One GRU layer over packed ``x`` (n, D). ``last``: each caption's final state (B, H) in sorted order;
    else every step's state, packed (n, H)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_ih, w_hh, b_ih, b_hh)):
        return _GRULayerFn.apply((pk, last), x, w_ih, w_hh, b_ih, b_hh)
    act = _input_projection(x, w_ih, b_ih, b_hh, out=_workspace(x)("act", (pk.n, w_ih.shape[0])))
    if last:
        return _recurrence(act, pk, w_hh, b_hh, None, None)
    h = w_hh.shape[1]
    states = act.new_empty(pk.n, h)
    _recurrence(act, pk, w_hh, b_hh, states, act.new_empty(pk.n, h))
    return states


def gru_last_states(rnn: torch.nn.GRU, x: torch.Tensor, pk: Packing, dropout: float = 0.0,
                    training: bool = False) -> torch.Tensor:
    """The top layer's state after each caption's last step, (B, H) in the batch's order.

    ``x``: the packed input (n, D); ``dropout`` between layers, as ``nn.GRU`` applies it."""
    layers = rnn.num_layers
    for k in range(layers):
        top = k == layers - 1
        x = gru_layer(x, getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
                      getattr(rnn, f"bias_ih_l{k}"), getattr(rnn, f"bias_hh_l{k}"), pk=pk, last=top)
        if not top and dropout > 0 and training:
            x = torch.nn.functional.dropout(x, dropout, training=True)
    return x.index_select(0, pk.inverse)
