"""``vsekit compare``: several runs side by side, their dev and test numbers, protocols and dev-rsum curves.

A run is a run folder (``results.json``, from ``vsekit run``) or a seeds
folder (``summary.json``, from ``vsekit run --seeds N``: the mean of its
seeds, with the sample std of every column). Each run's evaluation protocol
(tie rule, folds, captions per image, split sizes) is read from what the run
recorded; a run whose protocol differs from the first run's (the baseline) is
flagged with the fields that differ, because its numbers are not comparable.

:func:`compare_runs` reads them; :func:`write_compare` writes ``compare.json``,
``compare.csv``, ``compare.png`` (the dev rsum curves overlaid; needs
matplotlib) and ``compare.html`` into a folder; :func:`format_compare` is the
table printed on stdout.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vsekit.errors import CheckpointError, DataError, VsekitError
from vsekit.io import atomic_write_text
from vsekit.limits import read_json
from vsekit.training.manifest import refuse_foreign

FORMAT = "vsekit-compare/1"
#: the protocol fields compared between runs: how ties rank, folds averaged, captions ranked per image, split sizes
PROTOCOL_FIELDS = ("ties", "folds", "caps_per_image_eval", "n_images", "n_captions_eval")
OUTPUTS = ("compare.json", "compare.csv", "compare.png", "compare.html")


@attrs.define
class RunRow:
    """One compared run: its ``label`` and folder, the ``seeds`` of a seeds folder (None: one run), its mean
    ``dev`` and ``test`` metrics (``{"split", column: float...}``), their sample ``std`` over seeds per split,
    the recorded ``protocol`` per split, the run folders holding ``metrics.jsonl`` and ``differs``: the
    protocol fields (``"test ties"``...) that differ from the baseline's."""

    label: str
    path: Path
    seeds: list[int] | None
    dev: dict[str, Any] | None
    test: dict[str, Any]
    std: dict[str, dict[str, float]]
    protocol: dict[str, dict[str, Any] | None]
    curve_dirs: list[Path]
    differs: list[str] = attrs.Factory(list)

    def to_json(self) -> dict[str, Any]:
        """The row as JSON values (paths as strings)."""
        return {"label": self.label, "path": str(self.path), "seeds": self.seeds, "dev": self.dev, "test": self.test,
                "std": self.std, "protocol": self.protocol, "protocol_differs": self.differs}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = read_json(path)  # size and nesting bounded (vsekit.limits); DataError for bad JSON
    except OSError as exc:
        raise DataError(f"{path}: not readable ({exc.strerror or exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _split_metrics(record: dict[str, Any], split: str, source: Path) -> dict[str, Any] | None:
    m = record.get(split)
    if m is None:
        return None
    if not isinstance(m, dict) or not isinstance(m.get("rsum"), (int, float)):
        raise DataError(f"{source}: \"{split}\" holds no metrics (expected rsum and the recall columns)")
    return m


def _protocol(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None or not isinstance(m.get("protocol"), dict):
        return None
    return {"split": m.get("split"), **{k: m["protocol"].get(k) for k in PROTOCOL_FIELDS}}


def _scalars(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k == "split" or (isinstance(v, (int, float)) and not isinstance(v, bool))}


def _mean_std(ms: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    keys = [k for k, v in ms[0].items() if k != "split" and isinstance(v, (int, float))]
    mean = {"split": ms[0].get("split"), **{k: float(np.mean([m[k] for m in ms])) for k in keys}}
    std = {k: float(np.std([m[k] for m in ms], ddof=1)) if len(ms) > 1 else 0.0 for k in keys}
    return mean, std


def _not_a_run(path: Path) -> VsekitError:
    if not path.exists():
        return CheckpointError(f"{path}: no such folder (compare takes run folders made by `vsekit run`)")
    if not path.is_dir():
        return CheckpointError(f"{path}: not a run folder (expected a folder holding results.json, or "
                               "summary.json from `vsekit run --seeds N`)")
    if (path / "spec.toml").is_file() or (path / "metrics.jsonl").is_file():
        return CheckpointError(f"{path}: a run without results.json (unfinished or interrupted? "
                               f"`vsekit run SPEC --out {path} --resume` finishes it)")
    return CheckpointError(f"{path}: not a run folder (no results.json, nor summary.json from `vsekit run --seeds`)")


def read_run(path: str | Path, label: str | None = None) -> RunRow:
    """The :class:`RunRow` of a run folder or a seeds folder.

    Raises :class:`~vsekit.errors.CheckpointError` for a path that is no finished run (one line: the path and
    what it lacks) and :class:`~vsekit.errors.DataError` for a results or summary file that cannot be read.
    """
    path = Path(path)
    label = label or path.name or str(path)
    if (path / "results.json").is_file():
        source = path / "results.json"
        rec = _read_json(source)
        test = _split_metrics(rec, "test", source)
        if test is None:
            raise DataError(f"{source}: no \"test\" metrics (expected the results of a finished `vsekit run`)")
        dev = _split_metrics(rec, "valid", source)
        return RunRow(label, path, None, dev and _scalars(dev), _scalars(test), {},
                      {"dev": _protocol(dev), "test": _protocol(test)}, [path])
    if (path / "summary.json").is_file():
        return _read_seeds(path, label)
    raise _not_a_run(path)


def _read_seeds(path: Path, label: str) -> RunRow:
    source = path / "summary.json"
    rec = _read_json(source)
    runs = rec.get("runs")
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise DataError(f"{source}: \"runs\" lists no seed (expected the summary of `vsekit run --seeds N`)")
    tests = [_split_metrics(r, "test", source) for r in runs]
    devs = [_split_metrics(r, "valid", source) for r in runs]
    if any(t is None for t in tests):
        raise DataError(f"{source}: a seed without \"test\" metrics")
    if isinstance(rec.get("mean"), dict) and isinstance(rec.get("std"), dict):  # what summarize_runs recorded
        test, test_std = {"split": tests[0].get("split"), **rec["mean"]}, rec["std"]  # type: ignore[union-attr]
    else:
        test, test_std = _mean_std([_scalars(t) for t in tests])  # type: ignore[arg-type]
    dev, dev_std = _mean_std([_scalars(d) for d in devs]) if all(devs) else (None, {})  # type: ignore[arg-type]
    dirs = []
    for r in runs:
        own = Path(str(r.get("run_dir", "")))
        dirs.append(path / own.name if (path / own.name / "metrics.jsonl").is_file() else own)
    return RunRow(label, path, [r.get("seed") for r in runs], dev, test, {"dev": dev_std, "test": test_std},
                  {"dev": _protocol(devs[0]), "test": _protocol(tests[0])}, dirs)


def flag_protocols(rows: Sequence[RunRow]) -> None:
    """Set each row's ``differs``: the protocol fields (``"dev n_images"``...) unlike the first row's, or
    ``"test protocol not recorded"`` when a run recorded none (an older run)."""
    base = rows[0].protocol
    for row in rows:
        row.differs = []
        for split in ("dev", "test"):
            mine, theirs = row.protocol.get(split), base.get(split)
            if mine is None or theirs is None:
                if mine is not theirs:
                    row.differs.append(f"{split} protocol not recorded")
                continue
            row.differs += [f"{split} {k}" for k in ("split", *PROTOCOL_FIELDS) if mine.get(k) != theirs.get(k)]


def compare_runs(paths: Sequence[str | Path]) -> list[RunRow]:
    """Read every run of ``paths`` (see :func:`read_run`; labels: folder names, made unique) and flag
    protocols unlike the first run's. VsekitError: no path given, or as :func:`read_run`."""
    if not paths:
        raise VsekitError("compare needs at least one run folder")
    names = [Path(p).name or str(p) for p in paths]
    labels = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]
    rows = [read_run(p, label) for p, label in zip(paths, labels, strict=True)]
    flag_protocols(rows)
    return rows


def protocol_text(p: dict[str, Any] | None) -> str:
    """One short line of a recorded protocol (``"ties pessimistic, 1 fold, 5 caps/image, 1000 images / 5000
    captions"``), or ``"not recorded"``."""
    if p is None:
        return "not recorded"
    return (f"ties {p['ties']}, {p['folds']} fold{'s' if p['folds'] != 1 else ''}, {p['caps_per_image_eval']} "
            f"caps/image, {p['n_images']} images / {p['n_captions_eval']} captions")


def _split_rows(row: RunRow) -> list[tuple[str, dict[str, Any], dict[str, float]]]:
    """``[(split name, metrics, std)]``: dev (when recorded), then test."""
    out = [("dev", row.dev, row.std.get("dev", {}))] if row.dev is not None else []
    return [*out, ("test", row.test, row.std.get("test", {}))]


def format_compare(rows: Sequence[RunRow]) -> str:
    """The stdout table: the paper's columns (via :func:`vsekit.evaluate.format_table`) per run and split,
    ± std under a seeds folder's rows, then each run's protocol and the flags."""
    from vsekit.evaluate import format_table

    table, std = {}, {}
    for row in rows:
        seeds = f" ({len(row.seeds)} seeds)" if row.seeds else ""
        for split, m, s in _split_rows(row):
            table[f"{row.label}{seeds} {split}"] = m
            if row.seeds:
                std[f"{row.label}{seeds} {split}"] = s
    lines = [format_table(table, std=std or None), ""]
    for n, row in enumerate(rows):
        mark = "baseline" if n == 0 else ("PROTOCOL DIFFERS: " + ", ".join(row.differs) if row.differs else "same")
        lines.append(f"{row.label}: test {protocol_text(row.protocol.get('test'))} [{mark}]")
    return "\n".join(lines)


def compare_csv(rows: Sequence[RunRow]) -> str:
    """``compare.csv``: one line per run and split, the paper's columns, ``rsum_std``, the protocol fields."""
    from vsekit.evaluate import COLUMNS

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "path", "seeds", "split", *COLUMNS, "rsum_std", *PROTOCOL_FIELDS, "protocol_differs"])
    for row in rows:
        for split, m, s in _split_rows(row):
            p = row.protocol.get(split) or {}
            w.writerow([row.label, str(row.path), " ".join(map(str, row.seeds or [])), m.get("split") or split,
                        *[_csv_number(m.get(c, "")) for c in COLUMNS],
                        _csv_number(s.get("rsum", "")) if row.seeds else "",
                        *[p.get(k, "") for k in PROTOCOL_FIELDS], "; ".join(row.differs)])
    return buf.getvalue()


def _csv_number(value: Any) -> Any:
    """A float to 4 decimals (R@K in %, rsum: no float noise such as 240.79999999999998); others as they are."""
    return round(value, 4) if isinstance(value, float) else value


def plot_compare(rows: Sequence[RunRow], out: str | Path) -> tuple[Path, list[str]]:
    """``compare.png``: every run's dev rsum against step, overlaid (a seeds folder: one line per seed, one
    colour). Returns the path and one note per run without a readable ``metrics.jsonl``. Needs matplotlib."""
    from vsekit.report.curves import draw, pyplot, read_metrics, save_png, valid_points

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    notes = []
    for n, row in enumerate(rows):
        colour = f"C{n % 10}"
        for k, folder in enumerate(row.curve_dirs):
            try:
                points = valid_points(read_metrics(folder / "metrics.jsonl"))
            except VsekitError as exc:
                notes.append(f"{row.label}: no dev curve ({exc})")
                continue
            seed = f" seed {row.seeds[k]}" if row.seeds else ""
            if points:
                draw(ax, points, "", color=colour, label=f"{row.label}{seed}", alpha=1.0 if k == 0 else 0.6)
            else:
                notes.append(f"{row.label}{seed}: no validation in metrics.jsonl")
    if not ax.lines:
        ax.text(0.5, 0.5, "no run logged a validation", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8)
    ax.set(xlabel="step", ylabel="dev rsum", title="dev rsum (R@1+R@5+R@10, both directions)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, out), notes


def compare_html(rows: Sequence[RunRow], png: Path | None, notes: Sequence[str], html_path: Path) -> str:
    """``compare.html`` in the report's style: the table (each run and split a row card), each run's protocols
    (a card per run, a differing one marked) and the curves."""
    from vsekit.evaluate import COLUMNS, HEADERS
    from vsekit.report.pages import CSS, image_src

    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in ("run", "split", *HEADERS))
    body, protocols = [], []
    for n, row in enumerate(rows):
        seeds = f" ({len(row.seeds)} seeds)" if row.seeds else ""
        cls = "card differs" if row.differs else "card"
        for split, m, s in _split_rows(row):
            cells = "".join(f"<td>{m[c]:.1f}" + (f" ± {s[c]:.1f}" if row.seeds and c in s else "") + "</td>"
                            if isinstance(m.get(c), (int, float)) else "<td>–</td>" for c in COLUMNS)
            body.append(f'<tr class="{cls}"><td class="name">{esc(row.label + seeds)}</td><td>{esc(split)}</td>'
                        f"{cells}</tr>")
        mark = "baseline" if n == 0 else ("protocol differs: " + ", ".join(row.differs) if row.differs else
                                          "same protocol as the baseline")
        lines = "".join(f"<div>{esc(split)}: {esc(protocol_text(row.protocol.get(split)))}</div>"
                        for split in ("dev", "test") if split in row.protocol)
        protocols.append(f'<li class="{cls}"><div class="qtext">{esc(row.label + seeds)}</div>'
                         f'<div class="rid">{esc(str(row.path))}</div>{lines}<div class="mark">{esc(mark)}</div></li>')
    src = image_src(png, html_path.parent) if png is not None else None
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>vsekit compare</title><style>{CSS}</style></head><body>", "<h1>vsekit compare</h1>",
             f'<p class="meta">{len(rows)} runs; baseline (protocols compared against it): {esc(rows[0].label)}</p>',
             f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
             f'<ol class="protocols">{"".join(protocols)}</ol>']
    parts += [f'<p class="meta">{esc(n)}</p>' for n in notes]
    if src:
        parts.append(f'<p><img class="curves" src="{esc(src, quote=True)}" alt="dev rsum curves"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def check_outputs(out_dir: Path) -> None:
    """Refuse to overwrite compare files vsekit did not write (:func:`~vsekit.training.manifest.refuse_foreign`;
    ``compare.json`` records its format, and the other files are ours when it is)."""
    record = out_dir / "compare.json"

    def ours(_: Path) -> bool:
        return read_json(record).get("format") == FORMAT

    for name in OUTPUTS:
        refuse_foreign(out_dir / name, ours, "vsekit compare")


def write_compare(rows: Sequence[RunRow], out_dir: str | Path) -> dict[str, Any]:
    """Write ``compare.json``, ``compare.csv``, ``compare.png`` (skipped, with the reason, without matplotlib)
    and ``compare.html`` into ``out_dir``; returns their paths (``png`` None when skipped) and ``notes``.
    VsekitError: a compare file there that vsekit did not write."""
    out_dir = Path(out_dir)
    check_outputs(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        png, notes = plot_compare(rows, out_dir / "compare.png")
    except VsekitError as exc:  # no matplotlib: the table and page still get written
        png, notes = None, [f"curves skipped: {exc}"]
    record = {"format": FORMAT, "baseline": rows[0].label, "protocol_fields": list(PROTOCOL_FIELDS),
              "runs": [r.to_json() for r in rows], "notes": notes}
    paths = {"json": out_dir / "compare.json", "csv": out_dir / "compare.csv", "png": png,
             "html": out_dir / "compare.html", "notes": notes}
    atomic_write_text(paths["json"], json.dumps(record, indent=1))
    atomic_write_text(paths["csv"], compare_csv(rows))
    atomic_write_text(paths["html"], compare_html(rows, png, notes, paths["html"]))
    return paths
