"""CLI command ``vsekit serve``: a local web app and JSON API over one model (:mod:`vsekit.serve`).

Imports nothing heavy at module level: torch, Starlette and uvicorn load inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from vsekit.cli.evaluate import trust_code_option


@click.command("serve")
@click.argument("model", required=False, metavar="[MODEL]")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than 127.0.0.1 lets other machines use the server.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port; 0 picks a free one (the URL is printed).")
@click.option("--images-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of the banks' image files (e.g. Flickr8K's images/): shows thumbnails.")
@click.option("--images", "photos", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of your own photos: search them (their image bank is built once and cached).")
@click.option("--extractor", metavar="NAME", help="Image feature extractor (default: the one the model records).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads for inference (queries run one at a time).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01, max=1024), default=10.0, show_default=True,
              help="Largest request body, in MB (bigger uploads get 413).")
@trust_code_option
def serve_cmd(model: str | None, *, host: str, port: int, images_dir: Path | None, photos: Path | None,
              extractor: str | None, threads: int, max_upload_mb: float, trust_code: bool) -> None:
    """A local web page and JSON API: captions for a photo, photos for a caption, and image - word + word.

    MODEL: a run folder, a checkpoint .json or an installed model's name (`vsekit models`); default:
    $VSEKIT_MODEL, else the only installed model.

    \b
      vsekit serve f8k --images-dir ../shared/data/flickr8k/images
      vsekit serve runs/flickr8k --port 0
      vsekit serve f8k --images ~/Pictures/holiday
    """
    from vsekit.serve.server import ServeRequest, is_loopback, serve

    req = ServeRequest(model=model, host=host, port=port, images_dir=images_dir, photos=photos, extractor=extractor,
                       threads=threads, max_upload_mb=max_upload_mb, trust_code=trust_code)

    def ready(url: str) -> None:
        if not is_loopback(host):
            click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the server",
                       err=True)
        click.echo(f"serving {model or 'the default model'} at {url} (Ctrl-C stops)")

    serve(req, ready)


COMMANDS = (serve_cmd,)


def add_commands(cli: click.Group) -> None:
    """Add ``serve`` to the click group ``cli`` (:mod:`vsekit.cli` does for the ``vsekit`` group)."""
    for cmd in COMMANDS:
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
