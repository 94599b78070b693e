"""rsgan._memory: large blocks reused from the heap within the scope, glibc only."""

from __future__ import annotations

import resource
import threading

import pytest
import torch

from rsgan import _memory

pytestmark = pytest.mark.skipif(not _memory.available(), reason="needs Linux with glibc")

X = torch.ones(1, 16, 728, 728)  # a float32 activation of 34 MB, as in the statistics pass
W = torch.ones(16, 16, 3, 3) / 144
PAGES = 2 * X.numel() * 4 // 4096  # two such tensors per step


def _faults_of_a_step() -> int:
    """Minor page faults of a convolution and an add on a 34 MB activation: the fewest
    of steps 3-5 (a reused heap block is already mapped; a fresh mapping faults per page)."""
    faults = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = torch.nn.functional.conv2d(X, W, padding=1)
        z = y + 1
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del y, z
    return min(faults[2:])


def test_large_blocks_are_reused_within_the_scope():
    """The measurable effect: after a warm-up, a step on 34 MB activations faults next
    to no pages (outside, glibc maps such blocks afresh on most steps: ~16 k faults)."""
    with _memory.reuse_large_blocks():
        assert _faults_of_a_step() < PAGES // 10


class _Recorder:
    """Stands in for the C library to see which settings are made, and when."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, option: int, value: int) -> int:
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


SET = [("mallopt", -3, _memory.LARGE), ("mallopt", -1, _memory.KEEP)]
UNDO = [
    ("mallopt", -3, _memory.STEADY_MMAP_THRESHOLD),
    ("mallopt", -1, _memory.STEADY_TRIM_THRESHOLD),
    ("malloc_trim", 0),
]


def test_first_in_sets_last_out_undoes(monkeypatch):
    libc = _Recorder()
    monkeypatch.setattr(_memory, "_glibc", lambda: libc)
    with _memory.reuse_large_blocks():
        assert libc.calls == SET
        with _memory.reuse_large_blocks():
            pass
        assert libc.calls == SET  # the inner exit leaves the outer scope's setting
    assert libc.calls == SET + UNDO and _memory._depth == 0
    with pytest.raises(RuntimeError):
        with _memory.reuse_large_blocks():
            raise RuntimeError("boom")
    assert libc.calls == (SET + UNDO) * 2 and _memory._depth == 0


def test_threads_entering_and_leaving_share_one_setting(monkeypatch):
    """Concurrent scopes (Dask worker threads): set and undone in pairs, never nested,
    whatever the interleaving; the last one out leaves the steady state."""
    libc = _Recorder()
    monkeypatch.setattr(_memory, "_glibc", lambda: libc)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait(10)
            for _ in range(50):
                with _memory.reuse_large_blocks():
                    assert _memory._depth >= 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and _memory._depth == 0
    chunks = [libc.calls[i : i + 5] for i in range(0, len(libc.calls), 5)]
    assert chunks and all(c == SET + UNDO for c in chunks)
