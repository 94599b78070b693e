"""The ``rsgan`` command and its ``rio rsgan`` plugin twin.

Each command module in this package exposes ``commands``, a list of click commands; the
group here collects them. Errors derived from :class:`rsgan.errors.RsganError` become one
line on stderr and exit code 1 (no traceback); Ctrl-C exits 130. SIGTERM (a scheduler's or
``kill``'s request to stop) is raised as an interrupt in every command, so outputs are
cleaned up as after Ctrl-C, and exits 143 (``rsgan train`` finishes its step and saves
first, as on Ctrl-C). ``rsgan batch`` and ``rsgan augment`` exit 3 when they finished but
some scenes or pairs failed; the codes are :class:`rsgan.cli._exit.ExitCode`. Warnings are
one line each on stderr (``Warning: ...``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import click

from rsgan import __version__
from rsgan._redact import redact_text  # a leaf: the CLI starts without rasterio
from rsgan.cli._exit import ExitCode
from rsgan.cli._signals import Terminated, terminate_as_interrupt
from rsgan.errors import RsganError


def _leave_ctrl_c_to_the_command() -> None:
    """In a process the command started that imports the command as its main module (a
    local Dask worker of ``rsgan batch``, a spawned DataLoader worker), ignore Ctrl-C.

    A terminal sends Ctrl-C to the whole process group: such a process, interrupted while
    it started (importing torch: seconds), printed a traceback of its own under the
    command's one line. The command alone handles Ctrl-C and stops its processes.
    """
    if (
        multiprocessing.current_process().name != "MainProcess"
        and threading.current_thread() is threading.main_thread()
    ):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


_leave_ctrl_c_to_the_command()  # first: the imports below take seconds

# Modules whose ``commands`` list is registered, in help order.
_COMMAND_MODULES = (
    "rsgan.cli.info",
    "rsgan.cli.chips",
    "rsgan.cli.train",
    "rsgan.cli.generate",
    "rsgan.cli.translate",
    "rsgan.cli.demo",
    "rsgan.cli.batch",
    "rsgan.cli.augment",
)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the command line: ``Warning: <message>`` on stderr,
    without the file name and source line Python prints. rasterio's own
    NotGeoreferencedWarning (GDAL's remarks on a missing geotransform, at every open) is
    left out: rsgan warns once, in its own words, about a source without a CRS. (Under
    torchrun, `rsgan train` silences the other ranks' repeats itself.)"""
    if category.__name__ == "NotGeoreferencedWarning" and category.__module__.startswith(
        "rasterio"
    ):
        return
    text = redact_text(" ".join(str(message).split()))  # any library's, a signed URL in it
    click.echo("Warning: " + text, err=True)  # one line


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    with warnings.catch_warnings():  # restores the caller's filters and showwarning
        warnings.showwarning = _show_warning
        yield


class RsganGroup(click.Group):
    """A click group that turns rsgan errors into one readable line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with terminate_as_interrupt(), _one_line_warnings():
                return super().invoke(ctx)
        except RsganError as exc:
            raise click.ClickException(str(exc)) from None
        except Terminated:
            click.echo("Terminated; no partial output was left behind.", err=True)
            sys.exit(ExitCode.TERMINATED)
        except KeyboardInterrupt:
            click.echo("Interrupted; no partial output was left behind.", err=True)
            sys.exit(ExitCode.INTERRUPTED)


def _add_commands(group: click.Group) -> click.Group:
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in getattr(module, "commands", ()):
            group.add_command(command)
    return group


class _RedactingFormatter(logging.Formatter):
    """Log lines with every signed URL in them shown without its secrets
    (:func:`rsgan.io.redact_text`): GDAL's debug lines name each URL it requests, and
    a log is shared more freely than a signed URL should be."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _log_to_stderr(ctx: click.Context, verbose: int) -> None:
    """``-v``: the log records of rsgan's libraries (rasterio and GDAL, Dask, torch) at
    INFO and above on stderr, one line each with time, level and logger; ``-vv``: DEBUG
    too (with ``CPL_DEBUG=ON``, GDAL's requests and the server's answers). Without it they
    are not shown (rasterio's loggers have a NullHandler). The handler is removed when the
    command ends."""
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)

    def remove() -> None:
        root.removeHandler(handler)
        root.setLevel(level)

    ctx.call_on_close(remove)


@click.group(cls=RsganGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rsgan")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Show the log of GDAL/rasterio and Dask on stderr: -v info, -vv debug (with "
    "CPL_DEBUG=ON: GDAL's HTTP requests and answers).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """GANs for georeferenced remote-sensing rasters."""
    _log_to_stderr(ctx, verbose)


@click.group("rsgan", cls=RsganGroup, context_settings={"help_option_names": ["-h", "--help"]})
def rio_rsgan() -> None:
    """rsgan: GANs for georeferenced remote-sensing rasters (rio plugin)."""


def _load_commands() -> None:
    """Register the commands. Their modules import torch, GDAL and pandas (a second or
    more): Ctrl-C meanwhile printed a traceback of the import it stopped; it ends the
    command with one line and exit 130, as later (a process the command started, as
    above, ends without a word: the command says it)."""
    try:
        _add_commands(cli)
        _add_commands(rio_rsgan)
    except KeyboardInterrupt:
        if multiprocessing.current_process().name == "MainProcess":
            click.echo("Interrupted; nothing was done.", err=True)
        sys.exit(ExitCode.INTERRUPTED)


_load_commands()


if __name__ == "__main__":  # python -m rsgan.cli.main
    cli(prog_name="rsgan")
