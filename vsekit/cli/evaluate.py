"""``vsekit eval``: a run folder or checkpoint on a split, as the paper's table plus a metrics JSON;
``vsekit compare``: several runs side by side (:mod:`vsekit.compare`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vsekit.textsafe import terminal_text

#: ``--trust-code`` of every command that loads a model: let it import the code its files name
trust_code_option = click.option(
    "--trust-code", is_flag=True,
    help="Let the model import the code its files name (spec imports, module:Class or file.py:Class components); "
         "only for models from a source you trust.")


@click.command("eval")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN...")
@click.option("--ensemble", is_flag=True,
              help="Evaluate the ensemble of the runs given: the mean of their similarity matrices.")
@click.option("--split", default="test", show_default=True)
@click.option("--data", "data_spec", type=click.Path(path_type=Path), metavar="DIR_OR_SPEC",
              help="Evaluate on this data instead of the model's own: a precomp folder or a spec file.")
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Average over N equal folds (COCO 5-fold 1K).")
@click.option("--ties", type=click.Choice(["pessimistic", "reference"]), default="pessimistic", show_default=True,
              help="Tie rule: a tie counts against the query, or the reference's stable argsort order.")
@click.option("--strict-protocol", is_flag=True,
              help="Refuse a split with an image of fewer than 5 captions (default: evaluate it, warn and count).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the metrics JSON here (default: RUN/eval_SPLIT[_DATA-HASH][_foldsF][_ensembleN-HASH]"
                   "[_ties-RULE].json).")
@click.option("-q", "--quiet", is_flag=True)
@trust_code_option
def eval_cmd(*, checkpoints: tuple[Path, ...], ensemble: bool, split: str, data_spec: Path | None,
             folds: int | None, ties: str, strict_protocol: bool, output: Path | None, quiet: bool,
             trust_code: bool) -> None:
    """Evaluate a run folder or checkpoint on a split: the paper's table, plus JSON recording the data and protocol.

    Each image's first 5 captions are ranked. On a 5,000-image COCO test split the table shows COCO 1K (the
    mean of 5 folds of 1,000 images) and 5K, and the JSON holds both ("1k", "5k").

    With --ensemble and two or more runs, an image and a caption score the mean of the runs' cosine
    similarities (as the field reports ensembles), on the first run's data; the JSON goes into the first
    run's folder.

    \b
      vsekit eval runs/gru
      vsekit eval --ensemble runs/gru_seeds/seed0 runs/gru_seeds/seed1
    """
    from vsekit import api
    from vsekit.config import portable
    from vsekit.evaluate import format_table, reference_lines, table_rows
    from vsekit.io import atomic_write_text
    from vsekit.training.manifest import record_written, refuse_foreign

    if len(checkpoints) > 1 and not ensemble:
        raise click.UsageError(f"{len(checkpoints)} runs given: pass --ensemble to evaluate their ensemble, "
                               "or give one run")
    if ensemble and len(checkpoints) < 2:
        raise click.UsageError("--ensemble needs two or more runs")
    checkpoint = checkpoints[0]
    metrics, meta_path = api.eval_checkpoint(list(checkpoints) if ensemble else checkpoint, split=split,
                                             data=data_spec, folds=folds, ties=ties, verbose=not quiet,
                                             log_warnings=False, strict_protocol=strict_protocol,
                                             trust_code=trust_code)
    installed = not checkpoint.exists()  # an installed model's name: its folder is not ours to write in
    folder, prefix = (Path.cwd(), f"{checkpoint.name}_") if installed else (meta_path.parent, "")
    target = output or folder / (prefix + api.eval_result_name(split, metrics))
    refuse_foreign(target, api.is_eval_result, "vsekit eval")  # before anything is printed or written
    for w in metrics["warnings"]:
        click.echo(terminal_text(f"warning: {w}"), err=True)
    click.echo(reference_lines(metrics))
    label = f"{split} (ensemble of {len(checkpoints)})" if ensemble else split
    click.echo(format_table(table_rows(label, metrics)))
    record = portable({"checkpoint": str(meta_path), "split": split, **metrics}, target.resolve().parent)
    record_written(target)  # listed when written into a run folder (--force clears it)
    atomic_write_text(target, json.dumps(record, indent=1))
    click.echo(f"metrics: {target}")


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Also write compare.json, compare.csv, compare.png and compare.html into this folder.")
def compare_cmd(*, runs: tuple[Path, ...], output: Path | None) -> None:
    """Compare runs: dev and test numbers (a --seeds folder: mean ± std), each run's evaluation protocol (the
    first run is the baseline; a differing protocol is flagged) and, with -o, the dev rsum curves overlaid.

    \b
      vsekit compare runs/gru runs/bow runs/gru_seeds -o runs/compare
    """
    from vsekit import compare

    if output is not None:
        compare.check_outputs(output)  # refuse before printing anything
    rows = compare.compare_runs(runs)
    click.echo(compare.format_compare(rows))
    if output is None:
        return
    paths = compare.write_compare(rows, output)
    for note in paths["notes"]:
        click.echo(f"note: {note}", err=True)
    for key in ("json", "csv", "png", "html"):
        if paths[key] is not None:
            click.echo(f"{key}: {paths[key]}")


COMMANDS = (eval_cmd, compare_cmd)
