"""Preload of the local Dask workers ``rsgan batch`` starts (``LocalCluster(preload=...)``).

A terminal's Ctrl-C reaches every process of the command's group, the Dask worker
processes too: each died of its own KeyboardInterrupt and printed two tracebacks under
the command's one ``Interrupted`` line. The process that runs the batch alone handles
Ctrl-C (it records what was done and closes the cluster, which stops its workers); its
workers ignore it. Dask imports this module in each worker process as it starts, a worker
restarted after a crash included.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Ignore Ctrl-C (SIGINT) in this worker process (Dask's preload hook)."""
    del worker
    if threading.current_thread() is threading.main_thread():  # where handlers can be set
        signal.signal(signal.SIGINT, signal.SIG_IGN)
