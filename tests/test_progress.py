"""rsgan._progress.tqdm: one final line per bar in a stream that is not a terminal."""

from __future__ import annotations

import io
import itertools
import re

import pytest
import tqdm.std

from rsgan._progress import tqdm as bar_type


@pytest.fixture(autouse=True)
def _slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every update is drawn (2 s apart, past ``mininterval`` and ``delay``)."""
    ticks = itertools.count(start=1_000_000, step=2)
    monkeypatch.setattr(tqdm.std, "time", lambda: float(next(ticks)))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_a_completed_bar_ends_with_one_line_in_a_log() -> None:
    log = io.StringIO()
    with bar_type(total=3, desc="work", file=log, delay=1.0) as bar:
        for _ in range(3):
            bar.update(1)
            bar.set_postfix_str("loss 0.5", refresh=False)  # set after the last update
    lines = _lines(log.getvalue())
    assert [line for line in lines if "100%" in line] == [lines[-1]]
    assert lines[-1].startswith("work: 100%") and "loss 0.5" in lines[-1]
    assert log.getvalue().endswith("\n") and log.getvalue().count("\n") == 1


def test_a_bar_stopped_early_ends_with_one_line_in_a_log() -> None:
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt), bar_type(total=4, file=log) as bar:
        bar.update(2)
        raise KeyboardInterrupt
    lines = _lines(log.getvalue())
    assert [line for line in lines if "2/4" in line] == [lines[-1]]


def test_a_bar_without_total_ends_with_one_line_in_a_log() -> None:
    log = io.StringIO()
    with bar_type(file=log) as bar:
        bar.update(5)
    lines = _lines(log.getvalue())
    assert [line for line in lines if line.startswith("5it")] == [lines[-1]]


def test_a_terminal_gets_tqdm_unchanged() -> None:
    """On a terminal the second drawing overwrites the first: tqdm's final redraw (total
    elapsed time, overall rate) is kept."""
    out, plain = _Terminal(), _Terminal()
    with bar_type(total=2, file=out) as bar:
        bar.update(2)
    with tqdm.std.tqdm(total=2, file=plain) as bar:
        bar.update(2)
    assert len([line for line in _lines(out.getvalue()) if "100%" in line]) == 2
    assert _lines(out.getvalue())[-1] == _lines(plain.getvalue())[-1]


def test_a_disabled_bar_writes_nothing() -> None:
    log = io.StringIO()
    with bar_type(total=2, file=log, disable=True) as bar:
        bar.update(2)
    assert log.getvalue() == ""


def test_a_bar_that_does_not_stay_still_shows_its_end_in_a_log() -> None:
    """leave=False: close() draws nothing, so the completed state is drawn by the update
    (holding it back for close() left a log ending at 67 %)."""
    log = io.StringIO()
    with bar_type(total=3, desc="work", file=log, delay=1.0, leave=False) as bar:
        for _ in range(3):
            bar.update(1)
    assert "100%" in log.getvalue()
