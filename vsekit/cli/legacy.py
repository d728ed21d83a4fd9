"""``vsekit import-legacy`` and ``export-legacy``: the reference release's model files (over :mod:`vsekit.legacy`)."""

from __future__ import annotations

from pathlib import Path

import click

from vsekit.cli.evaluate import trust_code_option


@click.command("import-legacy")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the vsekit checkpoint (best.safetensors + best.json).")
@click.option("--force", is_flag=True, help="Replace a checkpoint already in the folder.")
def import_legacy_cmd(*, path: Path, out_dir: Path, force: bool) -> None:
    """Convert a reference model PATH.npz (with PATH.npz.pkl and PATH.npz.dictionary.pkl) to a vsekit checkpoint.

    The pickles are read as Python 2.7 wrote them (protocols 0-2, byte
    strings, the dictionary as a collections.OrderedDict) by a restricted
    unpickler that builds only plain data and that one OrderedDict; a pickle
    that names any other global, would call anything, or exceeds the size
    and work limits is refused.
    """
    from vsekit.legacy import import_legacy

    meta = import_legacy(path, out_dir, force=force)
    click.echo(f"imported {path} -> {meta}")


@click.command("export-legacy")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PATH.npz; PATH.npz.pkl and PATH.npz.dictionary.pkl are written beside it.")
@trust_code_option
def export_legacy_cmd(*, model: Path, out_path: Path, trust_code: bool) -> None:
    """Write MODEL (a run folder or checkpoint) in the reference release's layout
    (gru without recurrent biases, or bow)."""
    from vsekit.legacy import export_legacy, sidecar_paths

    npz = export_legacy(model, out_path, trust_code=trust_code)
    click.echo("wrote " + ", ".join(str(p) for p in sidecar_paths(npz)))


COMMANDS = (import_legacy_cmd, export_legacy_cmd)


def add_commands(cli: click.Group) -> None:
    """Add ``import-legacy`` and ``export-legacy`` to the click group ``cli`` (as :mod:`vsekit.cli` does)."""
    for cmd in COMMANDS:
        cli.add_command(cmd)
