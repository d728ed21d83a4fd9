"""``vsekit run`` and ``vsekit validate``: train a spec, or check it without running anything."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from vsekit.textsafe import terminal_text

SPEC = click.Path(dir_okay=False, path_type=Path)


class EchoHandler(logging.Handler):
    """Shows a record's bare message on stdout (the stdout of the moment, as click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Echo the formatted record to the current stdout (control characters escaped, its lines kept)."""
        click.echo(terminal_text(self.format(record), keep_newlines=True))


class TerminalFormatter(logging.Formatter):
    """A log line with the control characters of the data it quotes escaped (tracebacks keep their lines)."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, through :func:`~vsekit.textsafe.terminal_text`."""
        return terminal_text(super().format(record), keep_newlines=True)


def setup_logging(*, quiet: bool, debug: bool) -> None:
    """Log to stderr: DEBUG with ``--debug``, WARNING with ``-q``, else INFO; a run's result table and paths
    (the ``vsekit.training.results`` logger) go plain to stdout."""
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TerminalFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    results = logging.getLogger("vsekit.training.results")
    results.setLevel(level)
    results.propagate = False
    if not any(isinstance(h, EchoHandler) for h in results.handlers):
        results.addHandler(EchoHandler())


@click.command("run")
@click.argument("spec", type=SPEC)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, e.g. train.lr=1e-4.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default: output.dir or runs/NAME).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat with seeds seed..seed+N-1; report mean ± std.")
@click.option("--force", is_flag=True,
              help="Replace an existing run folder: remove the files vsekit wrote there (RUN/.vsekit-run), no others.")
@click.option("--resume", is_flag=True, help="Continue the run in the folder from its latest saved state.")
@click.option("--strict-protocol", is_flag=True,
              help="Refuse dev/test splits with an image of fewer than 5 captions (as [eval] strict_protocol = true).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.pass_context
def run_cmd(ctx: click.Context, *, spec: Path, overrides: tuple[str, ...], out: Path | None, seeds: int, force: bool,
            resume: bool, strict_protocol: bool, quiet: bool) -> None:
    """Train and evaluate the model that SPEC describes.

    Ctrl-C saves the training state and exits with status 130; --resume continues from it.
    """
    from vsekit import api
    from vsekit.evaluate import format_table, table_rows
    from vsekit.training.distributed import from_env

    setup_logging(quiet=quiet, debug=ctx.obj["debug"])
    if strict_protocol:  # a spec key, so the run folder's spec.toml records it
        overrides = (*overrides, "eval.strict_protocol=true")
    results = api.train(spec, out, overrides=overrides, seeds=seeds, quiet=quiet, force=force, resume=resume)
    if quiet and from_env().is_main:  # -q silences progress, not the result (printed by rank 0 under torchrun)
        if "mean" in results:
            click.echo(format_table({"mean": results["mean"]}, std={"mean": results["std"]}))
        else:
            click.echo(format_table(table_rows(results["test"].get("split", "test"), results["test"])))


@click.command("validate")
@click.argument("spec", type=SPEC)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key.")
def validate_cmd(*, spec: Path, overrides: tuple[str, ...]) -> None:
    """Check SPEC (keys, types, components, files it names) without running anything."""
    from vsekit import api
    from vsekit.errors import SpecError

    s = api.load_spec(spec, overrides)
    problems = api.check_spec(s)
    if problems:
        raise SpecError("\n".join(f"{spec}: {p}" for p in problems))
    senc = s.model.sentence_encoder
    click.echo(f"{spec}: ok — data {s.data.type}, sentence encoder {senc.type}, image encoder "
               f"{s.model.image_encoder.type}, dim {s.model.dim}, loss {s.loss.type}, {s.train.max_epochs} epochs")


COMMANDS = (run_cmd, validate_cmd)
