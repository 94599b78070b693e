"""Run every rsgan benchmark in turn (``make bench``); pass ``--quick`` for a short run.

Each benchmark prints its own side-by-side ratios; their results are recorded in
docs/benchmarks.md together with the machine they ran on. ``bench_huge.py`` (one 1e10 px
scene end to end: ~25 min and ~50 GB of disk) runs on its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "bench_chips.py",
    "bench_translate.py",
    "bench_upsample.py",
    "bench_training.py",
    "bench_catalog.py",
)


def main(argv: list[str]) -> int:
    failed = []
    for name in BENCHMARKS:
        script = HERE / name
        print(f"\n=== {name} {' '.join(argv)}", flush=True)
        if subprocess.call([sys.executable, str(script), *argv]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
