"""The ``vsekit`` command: a thin click shell over the Python API.

User errors (:class:`~vsekit.errors.VsekitError` and click's usage errors)
print one ``error:`` line each and exit with status 2, all through
:func:`user_errors`; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import click

from vsekit.errors import VsekitError


@contextlib.contextmanager
def user_errors(obj: dict[str, Any] | None = None) -> Iterator[None]:
    """The one place a user error leaves the ``vsekit`` command.

    A :class:`~vsekit.errors.VsekitError` or a click usage error (unknown
    option or command, missing argument, bad value such as ``--seeds 0``)
    becomes ``error: MESSAGE`` on stderr, one line per problem, and exit status
    2 (a VsekitError's own ``exit_code`` where it sets one, e.g. 130 after
    Ctrl-C). With ``--debug`` (``obj["debug"]``) the exception propagates with
    its traceback. Other exceptions are bugs and are never caught here.

    Raises:
        SystemExit: with the exit status, after printing.
    """
    try:
        yield
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `vsekit`: the help, as click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except (click.ClickException, VsekitError) as exc:
        if obj and obj.get("debug"):
            raise
        if isinstance(exc, VsekitError):
            message, prefix, code = str(exc), getattr(exc, "prefix", "error: "), exc.exit_code
            if getattr(exc, "silent", False):  # a rank of a torchrun job whose error rank 0 reports
                sys.exit(code)
        else:
            message, prefix, code = exc.format_message(), "error: ", 2
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                message = f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"
        lines = [line for line in message.splitlines() if line.strip()] or [type(exc).__name__]
        click.echo("\n".join(prefix + line for line in lines), err=True)
        sys.exit(code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)


class VsekitGroup(click.Group):
    """The ``vsekit`` group: every error of a run goes through :func:`user_errors`."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:  # the caller handles exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if extra.get("obj") is None:
            extra["obj"] = {}
        with user_errors(extra["obj"]):  # --debug sets obj["debug"] before any subcommand runs
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        sys.exit(rv if type(rv) is int else 0)  # a ctx.exit(code) comes back as its code; a return value does not


class _EchoHandler(logging.Handler):
    """Shows a record's bare message on stdout (the stdout of the moment, as click's test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record))


def _setup_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    results = logging.getLogger("vsekit.training.results")  # a run's result table and paths: plain, on stdout
    results.setLevel(level)
    results.propagate = False
    if not any(isinstance(h, _EchoHandler) for h in results.handlers):
        results.addHandler(_EchoHandler())


@click.group("vsekit", cls=VsekitGroup)
@click.version_option(package_name="vsekit")
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Visual-semantic embeddings: train, evaluate and use image-caption retrieval models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key, e.g. train.lr=1e-4.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder (default: output.dir or runs/NAME).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Repeat with seeds seed..seed+N-1; report mean ± std.")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in the folder from its latest saved state.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or per-epoch lines.")
@click.pass_context
def run(ctx: click.Context, spec: Path, overrides: tuple[str, ...], out: Path | None, seeds: int, force: bool,
        resume: bool, quiet: bool) -> None:
    """Train and evaluate the model that SPEC describes.

    Ctrl-C saves the training state and exits with status 130; --resume continues from it.
    """
    from vsekit import api
    from vsekit.training.distributed import from_env

    _setup_logging(quiet, ctx.obj["debug"])
    results = api.train(spec, out, overrides=overrides, seeds=seeds, quiet=quiet, force=force, resume=resume)
    if quiet and from_env().is_main:  # -q silences progress, not the result (printed by rank 0 under torchrun)
        from vsekit.evaluate import format_table

        if "mean" in results:
            click.echo(format_table({"mean": results["mean"]}, std={"mean": results["std"]}))
        else:
            click.echo(format_table({results["test"].get("split", "test"): results["test"]}))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec key.")
def validate(spec: Path, overrides: tuple[str, ...]) -> None:
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


@cli.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--data", "data_spec", type=click.Path(dir_okay=False, path_type=Path), help="Evaluate on this spec's data instead of the model's own.")
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Average over N equal folds (COCO 5-fold 1K).")
@click.option("--ties", type=click.Choice(["pessimistic", "reference"]), default="pessimistic", show_default=True,
              help="Tie rule: a tie counts against the query, or the reference's stable argsort order.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the metrics JSON here (default: RUN/eval_SPLIT[_DATA-HASH][_foldsF][_ties-RULE].json).")
@click.option("-q", "--quiet", is_flag=True)
def eval_cmd(checkpoint: Path, split: str, data_spec: Path | None, folds: int | None, ties: str,
             output: Path | None, quiet: bool) -> None:
    """Evaluate a run folder or checkpoint on a split: the paper's table, plus JSON recording the data and protocol."""
    from vsekit import api
    from vsekit.evaluate import format_table, reference_lines
    from vsekit.io import atomic_write_text

    metrics, meta_path = api.eval_checkpoint(checkpoint, split=split, data=data_spec, folds=folds, ties=ties,
                                             verbose=not quiet, log_warnings=False)
    for w in metrics["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(reference_lines(metrics))
    click.echo(format_table({split: metrics}))
    target = output or meta_path.parent / api.eval_result_name(split, metrics)
    atomic_write_text(target, json.dumps({"checkpoint": str(meta_path), "split": split, **metrics}, indent=1))
    click.echo(f"metrics: {target}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins: versions, hooks and the components each registers; skipped and disabled ones."""
    from vsekit import registry

    mgr = registry.manager()
    info = mgr.describe()
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    for p in info["plugins"]:
        dist = f" [{p['distribution']}]" if p["distribution"] and p["distribution"] != p["name"] else ""
        click.echo(f"{p['name']} {p['version'] or ''}{dist} ({p['module']})".replace("  ", " "))
        for kind, names in p["components"].items():
            click.echo(f"  {registry.KINDS[kind][0]}: {', '.join(names)}")
        if p["commands"]:
            click.echo(f"  commands: {', '.join(p['commands'])}")
    for name, why in info["skipped"].items():
        click.echo(f"{name}: skipped ({why})")
    for name, why in info["disabled"].items():
        click.echo(f"{name}: disabled ({why})")


def _add_plugin_commands() -> None:
    from vsekit import registry

    registry.manager().add_commands(cli)


def main() -> None:
    with user_errors():
        _add_plugin_commands()
    cli(obj={})


if __name__ == "__main__":  # pragma: no cover
    main()
