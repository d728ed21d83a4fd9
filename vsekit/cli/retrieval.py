"""CLI commands for using a trained model: ``retrieve``, ``encode``, ``bank``, ``report`` and ``models``.

A thin shell over :mod:`vsekit.retrieval` and :mod:`vsekit.report`, added to
the ``vsekit`` group through the built-in ``register_commands`` hook. MODEL is
a run folder, a checkpoint, or an installed model's name; left out, it is
``$VSEKIT_MODEL`` or the only installed model (``vsekit models`` lists them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from vsekit.cli.evaluate import trust_code_option
from vsekit.textsafe import terminal_json, terminal_text

MODEL_HELP = "run folder, checkpoint or installed model (default: $VSEKIT_MODEL or the only installed model)"


def _model_arg(f: Any) -> Any:
    return click.argument("model", required=False, metavar="[MODEL]")(f)


@click.command("retrieve")
@_model_arg
@click.option("--image", type=click.Path(path_type=Path), help="Query with an image file: its best captions.")
@click.option("--text", help="Query with a caption: its best images.")
@click.option("--features", "features_file", type=click.Path(path_type=Path),
              help="Query with a row of precomputed image features (.npy, N x dim_image).")
@click.option("--row", type=click.IntRange(min=0), default=0, show_default=True, help="The row of --features.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=5, show_default=True, help="How many results.")
@click.option("--bank", "bank_path", type=click.Path(path_type=Path),
              help="Search this bank (NAME.json + NAME.safetensors) instead of the model's default one.")
@click.option("--search", type=click.Choice(["captions", "images"]),
              help="What to search (default: captions for an image, images for a text or an arithmetic query).")
@click.option("--minus", multiple=True, metavar="WORD", help="Subtract a word's embedding (repeatable).")
@click.option("--plus", multiple=True, metavar="WORD", help="Add a word's embedding (repeatable).")
@click.option("--extractor", metavar="NAME", help="Image feature extractor for --image (default: the one the model "
              "records; required when it records none).")
@click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where result images lie (for --html thumbnails).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write an HTML page of the query and its results.")
@click.option("--embed-images", is_flag=True, help="Embed thumbnails in the HTML as data URIs (self-contained file).")
@trust_code_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar when the default bank is built on first use.")
def retrieve_cmd(*, model: str | None, image: Path | None, text: str | None, features_file: Path | None, row: int,
                 k: int, bank_path: Path | None, search: str | None, minus: tuple[str, ...], plus: tuple[str, ...],
                 extractor: str | None, images_dir: Path | None, as_json: bool, html_out: Path | None,
                 embed_images: bool, trust_code: bool, quiet: bool) -> None:
    """Captions for an image (--image), images for a caption (--text), with optional word arithmetic.

    \b
      vsekit retrieve --image photo.jpg -k 5
      vsekit retrieve runs/flickr8k --text "a dog runs on the beach" --json
      vsekit retrieve --image car.jpg --minus blue --plus red --bank my_photos
    """
    from vsekit import retrieval

    req = retrieval.RetrieveRequest(model=model, image=image, text=text, features=features_file, row=row, k=k,
                                    bank=bank_path, search=search, minus=minus, plus=plus, extractor=extractor,
                                    images_dir=images_dir, trust_code=trust_code, quiet=quiet)
    res = retrieval.run_query(req)
    if html_out is not None:
        from vsekit import report

        report.write_retrieval_page(html_out, res, embed_images=embed_images)
    if as_json:
        click.echo(terminal_json(json.dumps(res.to_dict(html_out), indent=1, ensure_ascii=False)))
        return
    bank = res.bank
    where = f" in {bank.path}" if bank.path else ""
    click.echo(terminal_text(f"top {len(res.rows)} of {len(bank)} {bank.kind}{where}:"))
    for d in res.rows:  # captions and ids are data: their control characters are escaped
        label = d["text"] if res.kind == "captions" else d["id"]
        extra = f"  [{d['id']}]" if res.kind == "captions" and d["id"] else ""
        mark = "  ✓" if d["ground_truth"] else ""
        click.echo(terminal_text(f"{d['rank']:>3}  {d['score']:.3f}  {label}{extra}{mark}"))
    if html_out is not None:
        click.echo(f"html: {html_out}")


@click.command("encode")
@_model_arg
@click.option("--captions", "captions_file", type=click.Path(path_type=Path),
              help="Captions: one a line, or CSV with header image,caption.")
@click.option("--features", "features_file", type=click.Path(path_type=Path), help="Image feature rows (.npy).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="OUT.npy (the embeddings) or OUT.npz (embeddings, plus the texts and ids or the feature rows).")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@trust_code_option
def encode_cmd(model: str | None, captions_file: Path | None, features_file: Path | None, output: Path,
               dtype: str, trust_code: bool) -> None:
    """Write the unit-norm embeddings of captions or image features to OUT.npy or OUT.npz, row i for input i.

    \b
    Captions follow one rule for line files: trailing blank lines are ignored,
    any other empty caption is refused by line number, so rows match lines.
    OUT.npz holds "embeddings" (N, dim) and, for captions, "texts" (and "ids"
    for an image,caption CSV), for features "rows" (their row numbers).
    """
    from vsekit import retrieval

    res = retrieval.encode_file(model, captions=captions_file, features=features_file, output=output, dtype=dtype,
                                 trust_code=trust_code)
    if res.unread_lines:
        click.echo(terminal_text(f"warning: {captions_file}: {len(res.unread_lines)} caption(s) with no word the "
                                 f"model knows (first: line {res.unread_lines[0]}); their rows say nothing about them"),
                   err=True)
    click.echo(f"wrote {output}: {res.shape[0]} x {res.shape[1]} {dtype}")


@click.command("bank")
@_model_arg
@click.option("--captions", "captions_file", type=click.Path(path_type=Path),
              help="Captions: one a line, or CSV with header image,caption (e.g. Flickr8K's captions.txt).")
@click.option("--features", "features_file", type=click.Path(path_type=Path), help="Image feature rows (.npy).")
@click.option("--ids", "ids_file", type=click.Path(path_type=Path), help="With --features: one image id a line.")
@click.option("--images", multiple=True, type=click.Path(path_type=Path),
              help="Image files or folders (repeatable): features by the model's image feature extractor.")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path),
              help="With --features: the folder the ids are file names in (for thumbnails).")
@click.option("--extractor", metavar="NAME", help="Image feature extractor for --images.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="BANK: writes BANK.json + BANK.safetensors (default: the model's default bank).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True)
@trust_code_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def bank_cmd(model: str | None, *, captions_file: Path | None, features_file: Path | None, ids_file: Path | None,
             images: tuple[Path, ...], image_root: Path | None, extractor: str | None, output: Path | None,
             dtype: str, trust_code: bool, quiet: bool) -> None:
    """Encode a caption bank (--captions) or an image bank (--features + --ids, or --images) once.

    With no input, builds the model's default caption bank (its captions file,
    or its training split) where retrieve looks for it.
    """
    from vsekit import retrieval

    bank = retrieval.make_bank(retrieval.BankRequest(model=model, captions=captions_file, features=features_file,
                                                     ids=ids_file, images=images, image_root=image_root,
                                                     extractor=extractor, output=output, dtype=dtype,
                                                     trust_code=trust_code, quiet=quiet))
    click.echo(f"wrote {bank.path} ({len(bank)} {bank.kind}, {bank.dim}-d {bank.dtype})")


@click.command("report")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Folder (default: RUN/report).")
@click.option("--split", default="test", show_default=True)
@click.option("-n", "--queries", "n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Queries per direction.")
@click.option("-k", "--top", "k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the split's image files, for thumbnails (the flickr8k reader knows its own).")
@click.option("--embed-images", is_flag=True, help="Embed thumbnails as data URIs (self-contained page).")
@trust_code_option
def report_cmd(run: Path, *, output: Path | None, split: str, n: int, k: int, images_dir: Path | None,
               embed_images: bool, trust_code: bool) -> None:
    """Training curves (curves.png) and a gallery of test queries (gallery.html) for a run folder."""
    from vsekit.report import write_report

    res = write_report(run, output, split=split, n=n, k=k, images_dir=images_dir, embed_images=embed_images,
                       trust_code=trust_code)
    if res["curves"] is not None:
        click.echo(f"curves: {res['curves']}")
    else:
        click.echo(terminal_text(f"curves: skipped ({res['curves_skipped']})"), err=True)
    click.echo(f"gallery: {res['gallery']}")


@click.command("models")
@click.option("--json", "as_json", is_flag=True)
def models_cmd(as_json: bool) -> None:
    """List installed models (packages exposing the entry-point group vsekit.models)."""
    from vsekit import retrieval

    out = retrieval.list_installed_models()
    if as_json:
        click.echo(terminal_json(json.dumps(out, indent=1)))
        return
    if not out:
        click.echo("no installed models (e.g. pip install vsekit-f8k)")
    for m in out:
        dist = f" [{m['distribution']} {m['version']}]" if m["distribution"] else ""
        click.echo(terminal_text(f"{m['name']}{dist}: {m['path'] or 'error: ' + str(m['problem'])}"))


COMMANDS = (retrieve_cmd, encode_cmd, bank_cmd, report_cmd, models_cmd)


def add_commands(cli: click.Group) -> None:
    """Add the retrieval commands to the click group ``cli`` (:mod:`vsekit.cli` does for the ``vsekit`` group)."""
    for cmd in COMMANDS:
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
