"""The exit codes of every ``rsgan`` command, in one place.

A script over ``rsgan`` tells its outcomes apart by these alone: 0 all done; 1 an error,
nothing (more) was done (the one ``Error:`` line says why); 2 a usage error (click's own:
a bad option, a missing argument); 3 the command finished but some of its items failed
(``rsgan batch``: scenes, listed and in the manifest, a rerun retries only them;
``rsgan augment``: pairs, listed, the others written and indexed);
130 Ctrl-C and 143 SIGTERM (128 + the signal's number, as shells report them), which
leave no partial output.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """``rsgan``'s exit codes (see the module)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    SOME_FAILED = 3
    INTERRUPTED = 130
    TERMINATED = 143
