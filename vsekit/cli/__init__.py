"""The ``vsekit`` command: a thin click shell over the Python API.

One module per command group (:mod:`~vsekit.cli.run`: run, validate; :mod:`~vsekit.cli.evaluate`: eval;
:mod:`~vsekit.cli.plugins`; :mod:`~vsekit.cli.extract`; :mod:`~vsekit.cli.legacy`: import-legacy,
export-legacy; :mod:`vsekit.cli.retrieval`: retrieve, encode, bank, report, models; :mod:`~vsekit.cli.serve`:
serve). Each command parses its arguments, makes one API call and prints; the API is imported inside the
command, so importing the CLI imports no torch. The group holds vsekit's own commands; :func:`main` then adds
the plugins' (``register_commands``).

User errors (:class:`~vsekit.errors.VsekitError` and click's usage errors)
print one ``error:`` line each and exit with status 2, all through
:func:`user_errors`; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from vsekit.cli import evaluate, extract, legacy, plugins, run
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
        """Run the command line and exit with its status.

        In standalone mode every error goes through :func:`user_errors` (``error: ...``
        on stderr, status 2 or the error's ``exit_code``), and the process exits with
        a ``ctx.exit(code)`` code or 0. With ``standalone_mode=False`` this is click's
        own ``main``: exceptions reach the caller and the return value comes back.
        """
        if not standalone_mode:  # the caller handles exceptions itself
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        if extra.get("obj") is None:
            extra["obj"] = {}
        with user_errors(extra["obj"]):  # --debug sets obj["debug"] before any subcommand runs
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        sys.exit(rv if type(rv) is int else 0)  # a ctx.exit(code) comes back as its code; a return value does not


@click.group("vsekit", cls=VsekitGroup)
@click.version_option(package_name="vsekit")
@click.option("--debug", is_flag=True, help="Show tracebacks for user errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Visual-semantic embeddings: train, evaluate and use image-caption retrieval models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


#: the commands of the group itself; the others (extract, legacy, retrieval) are listed by ``vsekit plugins``
#: under the built-in plugin ``vsekit``, as when a hook added them
CORE_COMMANDS = (*run.COMMANDS, *evaluate.COMMANDS, *plugins.COMMANDS)


def add_builtin_commands(group: click.Group) -> list[str]:
    """Add vsekit's own commands to ``group``: run, validate, eval, plugins, extract, the legacy and retrieval ones.

    A command already in ``group`` is kept, so a hook that adds them again is harmless.

    Returns:
        The names of the commands added beyond :data:`CORE_COMMANDS`, sorted.
    """
    from vsekit.cli import retrieval, serve

    for cmd in CORE_COMMANDS:
        if cmd.name not in group.commands:
            group.add_command(cmd)
    before = set(group.commands)
    for module in (extract, legacy, retrieval, serve):
        module.add_commands(group)
    return sorted(set(group.commands) - before)


#: what :func:`add_builtin_commands` added to ``cli`` beyond the core commands
BUILTIN_PLUGIN_COMMANDS = add_builtin_commands(cli)


def add_plugin_commands() -> None:
    """Let every plugin add its commands to ``cli`` (the ``register_commands`` hook); loads the plugins.

    ``vsekit plugins`` lists :data:`BUILTIN_PLUGIN_COMMANDS` under the built-in plugin.
    """
    from vsekit import plugins, registry

    mgr = registry.manager(collect=False)  # commands need no component classes: `vsekit --help` imports no torch
    builtin = mgr.plugins.get(plugins.BUILTIN)
    if builtin is not None:
        builtin.commands = sorted(set(builtin.commands) | set(BUILTIN_PLUGIN_COMMANDS))
    mgr.add_commands(cli)


def main() -> None:
    """The ``vsekit`` console script: vsekit's own commands, then the plugins', then run the command line."""
    with user_errors():
        add_plugin_commands()
    cli(obj={})
