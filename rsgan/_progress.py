"""Progress bars: tqdm's, ending with one line when they are written to a log.

tqdm draws a bar once more when it is closed, so its last state reaches the stream twice
when the last update was drawn too. On a terminal the second drawing overwrites the first
(a carriage return); in a log file or CI output, where each carriage return shows as a new
line, the 100% line appears twice. When the stream is not a terminal, the bar here leaves
the completed state to ``close()`` and skips ``close()``'s drawing of a state already
drawn, so each bar ends with one line. On a terminal (and in a notebook) it is tqdm's.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.std import tqdm as _std_tqdm

# a notebook's tqdm draws a widget, not lines: left as it is
_DRAWS_LINES = _auto_tqdm.display is _std_tqdm.display


class tqdm(_auto_tqdm):  # noqa: N801 (a drop-in for tqdm.auto.tqdm)
    """:class:`tqdm.auto.tqdm` whose bar ends with one line in a log (see the module)."""

    _drawn: tuple[Any, ...] | None = None  # (n, desc, postfix) last drawn
    _to_log: bool | None = None  # the stream is not a terminal; found at the first drawing

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        """Draw the bar as tqdm does, except (in a log) a completed state before
        ``close()`` and, in ``close()``, a state already drawn."""
        if msg is not None or not _DRAWS_LINES or not self._log_stream():
            return super().display(msg, pos)
        state = (self.n, self.desc, self.postfix)
        closing = self.disable  # close() sets it before its last drawing
        if closing and state == self._drawn:
            return True  # the log's last line is this state already
        if not closing and self.leave and self.total is not None and self.n >= self.total:
            return True  # complete: close() draws it, once, with the final rate and postfix
        self._drawn = state
        return super().display(msg, pos)

    def _log_stream(self) -> bool:
        if self._to_log is None:
            try:
                self._to_log = not self.fp.isatty()
            except (AttributeError, ValueError):  # no isatty, or a closed stream
                self._to_log = True
        return self._to_log


__all__ = ["tqdm"]
