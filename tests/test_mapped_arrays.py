"""rsgan._memory.MappedArrays: arrays in pages of their own, reused once every view of
one is gone."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rsgan import _memory


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def test_pages_come_back_once_every_view_is_gone():
    pool = _memory.MappedArrays()
    a = pool.empty((2, 3, 5), np.float32)
    assert a.shape == (2, 3, 5) and a.dtype == np.float32 and a.flags.writeable
    a[:] = 7.0
    where = _address(a)
    view = a[1]  # what the writer gets: one tile of a batch
    del a
    b = pool.empty((2, 3, 5), np.float32)  # the view still reads a's pages
    assert _address(b) != where and pool.mapped == 2
    assert (view == 7.0).all()
    del view
    c = pool.empty((2, 3, 5), np.float32)  # now they are free: reused, not mapped again
    assert _address(c) == where and pool.mapped == 2
    d = pool.empty((4, 3, 5), np.float32)  # another size: a mapping of its own
    assert pool.mapped == 3 and d.nbytes == 240
    del b, c, d


def test_arrays_in_use_never_share_pages_across_threads():
    """Threads taking arrays and dropping them as a tile worker and the writer do: no two
    arrays alive at once share memory, and none is overwritten while held."""
    pool = _memory.MappedArrays()
    errors: list[str] = []
    held: list[np.ndarray] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for step in range(200):
            a = pool.empty((3, 16, 16), np.float32)
            a.fill(k * 1000 + step)
            with lock:
                if any(np.shares_memory(a, h) for h in held):
                    errors.append(f"thread {k} step {step}: pages in use twice")
                held.append(a)
                if len(held) > 6:
                    old = held.pop(0)
                    if len(np.unique(old)) != 1:
                        errors.append("an array held was written by another")
            del a

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # 800 arrays from at most the held ones and two in each thread's hands (``a`` and
    # the ``old`` it dropped last)
    assert pool.mapped <= 6 + 2 * 4


@pytest.mark.parametrize("shape", [(0, 3, 4), (1,)])
def test_empty_and_tiny_arrays(shape):
    a = _memory.MappedArrays().empty(shape, np.float32)
    assert a.shape == shape
