"""The logged training loss is the mean over each logging window, and the curves plot it, even for short runs.

The per-batch losses are recorded independently (a wrapper around the loop's ``train_step``), then the
``train`` events of ``metrics.jsonl`` are checked against them: every batch in exactly one window, each
window's ``loss`` the mean of its batches' losses and ``batches`` their count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_spec_text

import vsekit
from vsekit.report import curves
from vsekit.training import loop
from vsekit.training.state import Progress


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_recorded(tmp_path: Path, data: Path, monkeypatch, **train: object) -> tuple[Path, list[float]]:
    """Train a tiny run, recording every batch's loss as the loop gets it."""
    losses: list[float] = []
    real = loop.train_step

    def recording(*args, **kwargs):
        value = real(*args, **kwargs)
        losses.append(value)
        return value

    monkeypatch.setattr(loop, "train_step", recording)
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(data, train={"batch_size": 16, "threads": 1, **train}), encoding="utf-8")
    results = vsekit.train(spec, tmp_path / "run", quiet=True)
    return Path(results["run_dir"]), losses


def test_logged_loss_is_the_mean_of_its_window(tmp_path, tiny_data, monkeypatch):
    run, losses = train_recorded(tmp_path, tiny_data, monkeypatch, max_epochs=2, disp_freq=4)
    ev = events(run)
    per_epoch = [e["step"] for e in ev if e["event"] == "epoch"]
    assert len(per_epoch) == 2 and per_epoch[-1] == len(losses)
    # windows end at every 4th step and at each epoch's end; nothing else
    want_ends = sorted({s for s in range(4, len(losses) + 1, 4)} | set(per_epoch))
    train = [e for e in ev if e["event"] == "train"]
    assert [e["step"] for e in train] == want_ends
    start = 0
    for e in train:
        window = losses[start:e["step"]]
        assert e["batches"] == len(window) > 0
        assert e["loss"] == pytest.approx(float(np.mean(window)), rel=1e-12, abs=1e-12)
        start = e["step"]
    assert start == len(losses)  # every batch is in exactly one window
    assert any(e["batches"] < 4 for e in train)  # the epochs' partial windows are logged too


def figure_of(monkeypatch, metrics: list[dict], tmp_path: Path):
    """Plot ``metrics`` and return the matplotlib figure instead of only its PNG."""
    got = {}
    real = curves.save_png

    def keep(fig, out):
        got["fig"] = fig
        got["texts"] = [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes]
        got["lines"] = [(ax.get_ylabel(), line.get_xydata().tolist(), line.get_marker())
                        for ax in fig.axes for line in ax.lines]
        return real(fig, out)

    monkeypatch.setattr(curves, "save_png", keep)
    png = curves.plot_curves(metrics, tmp_path / "curves.png")
    assert png.read_bytes().startswith(b"\x89PNG")
    return got


def test_short_run_plots_its_points_with_markers(tmp_path, tiny_data, monkeypatch):
    """Under 10 steps (disp_freq 10): one train event per epoch, drawn as a marked point, not an empty axis."""
    run, losses = train_recorded(tmp_path, tiny_data, monkeypatch, max_epochs=1, disp_freq=10)
    assert 0 < len(losses) < 10
    got = figure_of(monkeypatch, curves.read_metrics(run / "metrics.jsonl"), tmp_path)
    loss_lines = [(xy, m) for label, xy, m in got["lines"] if label == "training loss"]
    assert len(loss_lines) == 1
    xy, marker = loss_lines[0]
    assert xy == [[len(losses), pytest.approx(float(np.mean(losses)))]] and marker == "o"
    assert any("mean over each logging window" in t for t in got["texts"])


def test_old_log_without_windows_is_still_plotted_and_labelled(tmp_path, monkeypatch):
    old = [{"event": "train", "step": s, "loss": 1.0 / s} for s in (10, 20, 30)] + \
          [{"event": "valid", "step": 30, "rsum": 40.0}]
    got = figure_of(monkeypatch, old, tmp_path)
    assert any("one batch per logged step (older log)" in t for t in got["texts"])
    assert [xy for label, xy, _ in got["lines"] if label == "training loss"] == [[[10, 0.1], [20, 0.05], [30, 1 / 30]]]


def test_only_epoch_events_plot_the_epoch_means_and_empty_axes_say_why(tmp_path, monkeypatch):
    got = figure_of(monkeypatch, [{"event": "epoch", "step": 3, "mean_loss": 0.5}], tmp_path)
    assert [xy for label, xy, _ in got["lines"] if label == "training loss"] == [[[3, 0.5]]]
    assert "no validation logged" in got["texts"]
    with pytest.raises(vsekit.VsekitError, match="no train, epoch or valid events"):
        curves.plot_curves([{"event": "start", "step": 0}], tmp_path / "x.png")


def test_the_open_window_survives_a_saved_state():
    p = Progress(step=7, window_sum=2.5, window_n=3)
    back = Progress.from_json(json.loads(json.dumps(p.to_json())), None)
    assert (back.window_sum, back.window_n) == (2.5, 3)
    older = p.to_json()
    del older["window_sum"], older["window_n"]
    back = Progress.from_json(older, None)  # a state saved before windows: the window restarts
    assert (back.window_sum, back.window_n) == (0.0, 0) and not math.isnan(back.loss_sum)
