"""SIGTERM as an interrupt: a scheduler's or ``kill``'s request to stop cleans up like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread, so temporary outputs are removed on the
    way out as after Ctrl-C (the CLI then exits 143)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread.

    Without it SIGTERM ends the process on the spot: no half-written output ever reaches
    its destination (outputs are renamed into place), but the hidden temporary file stays
    until the next run writing the same output removes it. A handler someone else set is
    left alone, and outside the main thread (where Python cannot take signals) this does
    nothing.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
