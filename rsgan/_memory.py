"""A scoped glibc allocator setting for passes that allocate many large tensors.

glibc serves allocations above its mmap threshold (at most 32 MiB, however it adapts)
with fresh ``mmap`` pages and unmaps them on free, so each such tensor costs the kernel a
page fault and a zero fill per 4 KiB page; a float32 activation of a 728 px tile with 16
channels is 34 MB, above the ceiling. Within :func:`reuse_large_blocks` such blocks come
from the heap and are reused. translate_raster does not use it by default: in its
scene-statistics pass (and a scene translated in one pass) reuse made the pass up to 2x
faster but its peak memory 40 % higher than ``stats_memory_mb`` is calibrated for, and in
its main pass the bare model ran 15-25 % faster but the pipeline only 0-8 %, while peak
memory grew with the scene's length (ratio 16384 / 4096 px 1.14-1.20 against 1.08-1.10).
Wrap a call in this context to take that trade.

On exit the thresholds go to glibc's steady state for large-tensor work (32 MiB mmap
threshold, trimming above 64 MiB; mallopt has no getter, and setting a value turns off
glibc's own adaptation for good) and the free heap is handed back (``malloc_trim``).
Elsewhere than Linux with glibc this does nothing.

:func:`trim` hands the free heap back on its own; translate_raster calls it after the
statistics pass, whose freed activations the tile workers' threads would not reuse.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
STEADY_MMAP_THRESHOLD = 32 * 2**20
"""glibc's largest adaptive mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
STEADY_TRIM_THRESHOLD = 2 * STEADY_MMAP_THRESHOLD
"""The trim threshold glibc pairs with it."""
LARGE = 2**30
"""Allocations up to this size come from the heap within :func:`reuse_large_blocks`."""
KEEP = 2**30
"""Free memory at the top of the heap kept (not trimmed) within the scope."""

_lock = threading.Lock()
_depth = 0
_libc: Any = None
_probed = False


def _glibc() -> Any:
    """The C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    global _libc, _probed
    if not _probed:
        _probed = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version  # noqa: B018  (glibc only)
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = libc
            except (OSError, AttributeError):
                _libc = None
    return _libc


def available() -> bool:
    """Whether :func:`reuse_large_blocks` has an effect here (Linux with glibc)."""
    return _glibc() is not None


@contextlib.contextmanager
def reuse_large_blocks() -> Iterator[None]:
    """Within the block, allocations up to :data:`LARGE` bytes are served from (and
    freed back to) the heap instead of fresh mappings. Re-entrant and thread-safe: the
    setting is process-wide, applied by the first caller in and undone by the last out."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, LARGE)
            libc.mallopt(_M_TRIM_THRESHOLD, KEEP)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def trim() -> None:
    """Hand the C library's free heap back to the system (``malloc_trim(0)``, every
    arena); nothing elsewhere than Linux with glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _anonymous_map(size: int) -> mmap.mmap:
    """``size`` bytes of fresh zeroed memory in a mapping of their own; on Linux its
    pages are mapped at once (~3 ms for 6.5 MB against ~5.5 ms faulted page by page)."""
    if sys.platform == "win32":  # anonymous (backed by the paging file) with no flags
        return mmap.mmap(-1, size)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, size, flags=flags)


class MappedArrays:
    """Arrays in pages of their own (anonymous mappings), reused: once every view of
    one is gone, its pages go back to this pool, not to the system, and the next array
    of the same size takes them; they go back to the system with the pool.

    For arrays a thread makes and other threads hold while it goes on allocating (a tile
    worker's outputs, waiting for the writer). Made from the thread's heap, each one held
    keeps the heap from shrinking around it, and over a long run the heaps grow
    (docs/benchmarks.md, nineteenth session). A fresh mapping for each would cost its
    page faults: ~5 ms for a 6.5 MB tile here, against ~1 ms to fill it. Thread-safe."""

    def __init__(self) -> None:
        self._free: dict[int, list[mmap.mmap]] = {}
        self._lock = threading.Lock()
        self.mapped = 0
        """How many mappings the pool made (the rest of its arrays reused one)."""

    def empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """An uninitialised array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        size = max(1, count * dtype.itemsize)
        with self._lock:
            free = self._free.get(size)
            buffer = free.pop() if free else None
        if buffer is None:
            buffer = _anonymous_map(size)
            self.mapped += 1
        root = np.frombuffer(buffer, dtype, count=count)
        # numpy's views keep the array they view (``root``), not the buffer, as their base
        weakref.finalize(root, self._give_back, size, buffer)
        return root.reshape(shape)

    def _give_back(self, size: int, buffer: mmap.mmap) -> None:
        with self._lock:
            self._free.setdefault(size, []).append(buffer)
