"""Training curves from a run's ``metrics.jsonl``: the logged loss and the dev rsum against step.

A ``train`` event's ``loss`` is the mean loss over its logging window: every
batch since the previous ``train`` event (``batches`` of them; see
:mod:`vsekit.training.loop`). Logs written before 0.2 have no ``batches``:
their ``loss`` is one batch's, and the plot says so. A run shorter than one
window still has a point per epoch (the loop logs each epoch's last, partial
window); few points are drawn with markers, and an axis with nothing to draw
says why instead of staying empty. Plotting needs matplotlib
(``pip install 'vsekit[report]'``).
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.io import atomic_write_bytes, split_records
from vsekit.report.pages import image_src

#: fewer points than this are drawn with markers (a line alone hides how few they are)
MARKERS_BELOW = 30


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The events in metrics.jsonl ``path``, a cut last line skipped. CheckpointError: no file; DataError: bad JSON."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (a run folder has metrics.jsonl)")
    lines = split_records(path.read_text(encoding="utf-8"), str(path), "JSON event", allow_empty_file=True)
    rows = []
    for n, line in enumerate(lines, 1):  # records end at "\n" only (vsekit.io.read_lines' rule)
        try:
            rows.append(json.loads(line))
        except ValueError:
            if n == len(lines):
                continue  # a run killed mid-write: its last line may be cut
            raise DataError(f"{path}: line {n} is not JSON") from None
    return rows


def loss_points(metrics: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, float]], str]:
    """``([(step, loss)], what the values are)``: the train events' window means; for an older log, its
    single-batch losses; with no train event at all, the epochs' mean losses (``epoch`` events)."""
    train = [m for m in metrics if m.get("event") == "train" and "loss" in m]
    if train and all("batches" in m for m in train):
        sizes = sorted({int(m["batches"]) for m in train})
        size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        return [(m["step"], m["loss"]) for m in train], f"mean over each logging window ({size} batches)"
    if train:
        return [(m["step"], m["loss"]) for m in train], "one batch per logged step (older log)"
    epochs = [(m["step"], m["mean_loss"]) for m in metrics if m.get("event") == "epoch" and "mean_loss" in m]
    return epochs, "mean over each epoch"


def valid_points(metrics: Sequence[dict[str, Any]], key: str = "rsum") -> list[tuple[int, float]]:
    """``[(step, value)]`` of the ``valid`` events holding ``key``."""
    return [(m["step"], m[key]) for m in metrics if m.get("event") == "valid" and key in m]


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend. VsekitError (one line, the install command) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VsekitError("plots need matplotlib: pip install 'vsekit[report]'") from None
    return plt


def save_png(fig: Any, out: str | Path) -> Path:
    """Write the matplotlib figure ``fig`` to ``out`` as a PNG (atomically), close it and return the path."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out


def draw(ax: Any, points: Sequence[tuple[int, float]], empty: str, **style: Any) -> None:
    """Plot ``points`` on the axes ``ax`` (markers when fewer than MARKERS_BELOW), or write ``empty`` on it."""
    if not points:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="#666")
        return
    marker = "o" if len(points) < MARKERS_BELOW else None
    ax.plot(*zip(*points, strict=True), marker=marker, ms=4, lw=1, **style)


def plot_curves(metrics: Sequence[dict[str, Any]], out: str | Path, title: str = "") -> Path:
    """The training loss (see :func:`loss_points`) and the dev ``rsum`` (valid events) against step, as a
    PNG at ``out``. DataError: no event to plot; VsekitError: no matplotlib."""
    train, what = loss_points(metrics)
    valid = valid_points(metrics)
    if not train and not valid:
        raise DataError("metrics.jsonl has no train, epoch or valid events to plot")
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    draw(ax1, train, "no training loss logged", color="tab:blue")
    ax1.set(xlabel="step", ylabel="training loss", title=f"loss: {what}")
    ax1.title.set_fontsize(9)
    draw(ax2, valid, "no validation logged", color="tab:green")
    if valid:
        best = max(valid, key=lambda sv: sv[1])
        ax2.annotate(f"best {best[1]:.1f}", best, textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax2.set(xlabel="step", ylabel="dev rsum", title="dev rsum (R@1+R@5+R@10, both directions)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, out)


def report_curves(run_dir: Path, out_dir: Path, name: str) -> dict[str, Any]:
    """``{"curves": curves.png or None, "curves_skipped": why or None}`` for the run's ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    try:
        png = plot_curves(read_metrics(path), out_dir / "curves.png", title=name) if path.is_file() else None
    except VsekitError as exc:
        return {"curves": None, "curves_skipped": str(exc)}
    return {"curves": png, "curves_skipped": None if png else f"{path}: no such file"}


def curves_html(result: dict[str, Any], out_dir: Path, embed_images: bool) -> str:
    """The curves image of :func:`report_curves` (or why they were skipped) as an HTML paragraph."""
    if result["curves"] is not None:
        src = image_src(result["curves"], out_dir, embed_images)
        return f'<p><img class="curves" src="{html.escape(src or "", quote=True)}" alt="training curves"></p>'
    if result["curves_skipped"]:
        return f'<p class="meta">training curves skipped: {html.escape(result["curves_skipped"])}</p>'
    return ""
