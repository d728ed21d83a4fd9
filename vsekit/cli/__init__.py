"""The ``vsekit`` command: a thin click shell over the Python API.

One module per command group (:mod:`~vsekit.cli.run`: run, validate; :mod:`~vsekit.cli.evaluate`: eval;
:mod:`~vsekit.cli.plugins`; :mod:`~vsekit.cli.extract`; :mod:`~vsekit.cli.legacy`: import-legacy,
export-legacy; :mod:`vsekit.cli.retrieval`: retrieve, encode, bank, report, models; :mod:`~vsekit.cli.serve`:
serve). Each command parses its arguments, makes one API call and prints; the API is imported inside the
command, so importing the CLI imports no torch. The group holds vsekit's own commands; :func:`main` then adds
the plugins' (``register_commands``).

User errors (:class:`~vsekit.errors.VsekitError`, click's usage errors, and a full disk, no permission, out
of memory, input nested too deeply or not UTF-8) print one ``error:`` line each and exit with status 2; any
other exception is a bug: one ``error: internal error (a bug in vsekit): ...`` line and status 70. All of it
goes through :func:`user_errors`; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from vsekit.cli import evaluate, extract, legacy, plugins, run
from vsekit.errors import VsekitError
from vsekit.textsafe import terminal_text

#: the exit status of a bug in vsekit (sysexits.h's EX_SOFTWARE, "internal software error"); 2 is the user's
#: input, 1 click's Abort, 130 Ctrl-C
EXIT_BUG = 70

#: what bad input or a bad environment raises outside VsekitError: a file that cannot be read or written (a full
#: disk, a file-size limit, no permission, a folder where a file was expected), too little memory, input nested
#: too deeply, text that is not UTF-8
EXPECTED_ERRORS = (OSError, MemoryError, RecursionError, UnicodeError)


def expected_error_message(exc: BaseException) -> str:
    """One line for an :data:`EXPECTED_ERRORS` exception (or torch's out-of-memory error), naming the file where the
    exception knows it: ``PATH: No space left on device``."""
    if isinstance(exc, OSError):
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        what = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}: {what}" if where else f"{what} ({type(exc).__name__})"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read (RecursionError); vsekit.limits bounds the files it reads"
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8: {exc}"
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return "out of memory" + (f": {detail}" if detail else "") + \
        " (smaller [model] dim, batch_size or input files need less)"


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's allocator failures (a RuntimeError, not a MemoryError), recognised without importing torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc)


def _bug_message(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 300 else detail[:297] + "..."
    return (f"internal error (a bug in vsekit): {type(exc).__name__}: {detail}; run again with --debug for the "
            f"traceback and please report it")


@contextlib.contextmanager
def user_errors(obj: dict[str, Any] | None = None) -> Iterator[None]:
    """The one place an error leaves the ``vsekit`` command.

    - A :class:`~vsekit.errors.VsekitError` or a click usage error (unknown option or command, missing argument,
      bad value such as ``--seeds 0``) becomes ``error: MESSAGE`` on stderr, one line per problem, and exit
      status 2 (a VsekitError's own ``exit_code`` where it sets one, e.g. 130 after Ctrl-C). A message may quote
      data: its lines are split on newlines only and their control characters escaped
      (:func:`~vsekit.textsafe.terminal_text`).
    - An :data:`EXPECTED_ERRORS` exception (a full disk, no permission, out of memory, too deep, not UTF-8)
      becomes one ``error:`` line naming the file where known (:func:`expected_error_message`), status 2.
    - Anything else is a bug: one line ``error: internal error (a bug in vsekit): TYPE: MESSAGE; run again
      with --debug ...`` and status :data:`EXIT_BUG` (70).

    With ``--debug`` (``obj["debug"]``) every exception propagates with its traceback.

    Raises:
        SystemExit: with the exit status, after printing.
    """
    def debug() -> bool:  # --debug is parsed after this context is entered
        return bool(obj and obj.get("debug"))

    try:
        yield
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `vsekit`: the help, as click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except (click.ClickException, VsekitError) as exc:
        if debug():
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
        lines = [terminal_text(line) for line in message.split("\n") if line.strip()] or [type(exc).__name__]
        click.echo("\n".join(prefix + line for line in lines), err=True)
        sys.exit(code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.exceptions.Exit:  # ctx.exit(code): not an error
        raise
    except Exception as exc:
        if debug():
            raise
        expected = isinstance(exc, EXPECTED_ERRORS) or _is_out_of_memory(exc)
        message = expected_error_message(exc) if expected else _bug_message(exc)
        click.echo("error: " + terminal_text(" ".join(message.split())), err=True)
        sys.exit(2 if expected else EXIT_BUG)


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
