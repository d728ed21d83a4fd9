"""``vsekit extract``: image folders and files -> a feature file (a thin shell over :mod:`vsekit.extract`)."""

from __future__ import annotations

from pathlib import Path

import click

from vsekit.textsafe import terminal_text

#: how many unreadable images are listed by name before "... and N more"
LIST_AT_MOST = 50


def echo_unreadable(errors: dict[str, str]) -> None:
    """List the images that could not be read (``{file name: why}``) on stderr, at most :data:`LIST_AT_MOST`."""
    click.echo(f"{len(errors)} image(s) could not be read (not written):", err=True)
    for i, (name, why) in enumerate(sorted(errors.items())):
        if i == LIST_AT_MOST:
            click.echo(f"  ... and {len(errors) - LIST_AT_MOST} more", err=True)
            break
        click.echo(terminal_text(f"  {name}: {why}"), err=True)  # file names are data


@click.command("extract")
@click.argument("extractor", metavar="SPEC_OR_EXTRACTOR")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("features.npy"),
              show_default=True, help="Feature file; ids go to its stem + '_ids.txt' ('X_ims.npy' -> 'X_ids.txt').")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default=None,
              help="Row type (default: the existing file's, else float32).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Override an extractor option, e.g. ten_crop=true or batch_size=64.")
@click.option("--force", is_flag=True, help="Start a new file instead of adding to an existing one.")
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Save every N images (what an interrupted run keeps).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def extract_cmd(*, extractor: str, images: tuple[Path, ...], output: Path, dtype: str | None,
                options: tuple[str, ...], force: bool, chunk: int, quiet: bool) -> None:
    """Extract image features of IMAGES (folders and/or files) into a .npy file, one row per image.

    SPEC_OR_EXTRACTOR is a registered image feature extractor (e.g.
    efficientnet_lite0, see `vsekit plugins`), a TOML file with one
    component table (type = "..." and its options), or a spec whose
    [data.features] names one. Folders contribute their .jpg, .jpeg, .png
    and .webp files (sorted, not recursive). Rows are written with the
    image file names in OUTPUT's ids file. Rerunning skips the images
    already in OUTPUT and appends the others; unreadable images are
    listed at the end and do not stop the batch.
    """
    from vsekit.errors import DataError
    from vsekit.extract import extract_folder, resolve_extractor

    component = resolve_extractor(extractor, options)
    report = extract_folder(component, images, output, dtype=dtype, force=force, progress=not quiet, chunk=chunk)
    rate = f" ({report.images_per_s:.2f} images/s)" if report.images_per_s else ""
    click.echo(f"{report.out}: {report.rows} rows of {report.dim}-d features; {report.added} added in "
               f"{report.seconds:.1f} s{rate}, {report.skipped} already there; ids in {report.ids_file}")
    if report.errors:
        echo_unreadable(report.errors)
        if not report.rows:
            raise DataError(f"none of the {len(report.errors)} image(s) could be read")


COMMANDS = (extract_cmd,)


def add_commands(cli: click.Group) -> None:
    """Add ``extract`` to the click group ``cli`` (:mod:`vsekit.cli` does for the ``vsekit`` group)."""
    for cmd in COMMANDS:
        cli.add_command(cmd)
