"""``vsekit eval``: a run folder or checkpoint on a split, as the paper's table plus a metrics JSON."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--data", "data_spec", type=click.Path(path_type=Path), metavar="DIR_OR_SPEC",
              help="Evaluate on this data instead of the model's own: a precomp folder or a spec file.")
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Average over N equal folds (COCO 5-fold 1K).")
@click.option("--ties", type=click.Choice(["pessimistic", "reference"]), default="pessimistic", show_default=True,
              help="Tie rule: a tie counts against the query, or the reference's stable argsort order.")
@click.option("--strict-protocol", is_flag=True,
              help="Refuse a split with an image of fewer than 5 captions (default: evaluate it, warn and count).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the metrics JSON here (default: RUN/eval_SPLIT[_DATA-HASH][_foldsF][_ties-RULE].json).")
@click.option("-q", "--quiet", is_flag=True)
def eval_cmd(*, checkpoint: Path, split: str, data_spec: Path | None, folds: int | None, ties: str,
             strict_protocol: bool, output: Path | None, quiet: bool) -> None:
    """Evaluate a run folder or checkpoint on a split: the paper's table, plus JSON recording the data and protocol.

    Each image's first 5 captions are ranked. On a 5,000-image COCO test split the table shows COCO 1K (the
    mean of 5 folds of 1,000 images) and 5K, and the JSON holds both ("1k", "5k").
    """
    from vsekit import api
    from vsekit.config import portable
    from vsekit.evaluate import format_table, reference_lines, table_rows
    from vsekit.io import atomic_write_text

    metrics, meta_path = api.eval_checkpoint(checkpoint, split=split, data=data_spec, folds=folds, ties=ties,
                                             verbose=not quiet, log_warnings=False, strict_protocol=strict_protocol)
    for w in metrics["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(reference_lines(metrics))
    click.echo(format_table(table_rows(split, metrics)))
    installed = not checkpoint.exists()  # an installed model's name: its folder is not ours to write in
    folder, prefix = (Path.cwd(), f"{checkpoint.name}_") if installed else (meta_path.parent, "")
    target = output or folder / (prefix + api.eval_result_name(split, metrics))
    record = portable({"checkpoint": str(meta_path), "split": split, **metrics}, target.resolve().parent)
    atomic_write_text(target, json.dumps(record, indent=1))
    click.echo(f"metrics: {target}")


COMMANDS = (eval_cmd,)
