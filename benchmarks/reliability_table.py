"""Render the reliability table of docs/reliability.md from the tests' own counts.

The tests in ``tests/reliability/`` count every input they try (see the ``tally`` fixture
in ``tests/reliability/conftest.py``). This script runs them with ``RSGAN_RELIABILITY_JSON``
set, reads the counts back and prints a Markdown table: per entry point and scenario, the
inputs tried, the tests that tried them, and how those tests ended (passed, or expected to
fail because of an open finding). With ``--write`` it replaces the table between the
``<!-- reliability-table -->`` markers of docs/reliability.md.

Usage::

    python benchmarks/reliability_table.py                # CI part only (not slow)
    python benchmarks/reliability_table.py --slow --write # everything, update the doc
    python benchmarks/reliability_table.py --from counts.json  # render saved counts
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
START, END = "<!-- reliability-table -->", "<!-- /reliability-table -->"
COUNTS_ENV = "RSGAN_RELIABILITY_JSON"
FUZZ_ENV = "RSGAN_RELIABILITY_FUZZ_JSON"


def run_tests(slow: bool, counts: Path, fuzz: Path) -> int:
    """Run tests/reliability (slow tests too when ``slow``); returns pytest's exit code."""
    env = dict(os.environ, **{COUNTS_ENV: str(counts), FUZZ_ENV: str(fuzz)})
    marker = [] if slow else ["-m", "not slow"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marker]
    return subprocess.call([*command, str(ROOT / "tests" / "reliability")], env=env, cwd=ROOT)


def _outcome(row: dict[str, Any]) -> str:
    findings = ", ".join(str(n) for n in row.get("findings", []))
    parts = []
    if row.get("passed"):
        parts.append("as required")
    if row.get("xfailed"):
        parts.append(f"**open: finding {findings}**")
    if row.get("failed"):
        parts.append(f"**FAILED ({row['failed']} inputs)**")
    if row.get("xpassed"):
        parts.append(f"passed this run (finding {findings} is timing-dependent, or fixed)")
    return "; ".join(parts) or "not run"


def render(rows: Sequence[dict[str, Any]], fuzz: dict[str, Any] | None) -> str:
    """The Markdown table (and a line on the mutated rasters) for ``rows`` of counts."""
    lines = [
        "| entry point | scenario | inputs tried | tests | passed | xfail | outcome |",
        "|---|---|--:|--:|--:|--:|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["entry"], r["scenario"])):
        lines.append(
            f"| `{row['entry']}` | {row['scenario']} | {row.get('tried', 0)} | "
            f"{row.get('tests', 0)} | {row.get('passed', 0)} | {row.get('xfailed', 0)} | "
            f"{_outcome(row)} |"
        )
    total = sum(r.get("tried", 0) for r in rows)
    open_inputs = sum(r.get("xfailed", 0) + r.get("failed", 0) for r in rows)
    lines.append("")
    lines.append(
        f"{total} inputs over {len(rows)} rows; {open_inputs} of them still end in an open "
        "finding or a failure."
    )
    if fuzz:
        outcomes = ", ".join(
            f"{k}: {v}" for k, v in sorted(fuzz.items()) if k not in ("mutants", "seed")
        )
        lines.append(
            f"Mutated GeoTIFFs (largest run, seed {fuzz['seed']}): {fuzz['mutants']} files; "
            f"{outcomes} (ok = read and translated; rsgan = an RsganError; other/crash = none)."
        )
    return "\n".join(lines) + "\n"


def write_doc(table: str, doc: Path = DOC) -> None:
    """Replace the table between the markers of ``doc``."""
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{table}{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="include the slow tests")
    parser.add_argument("--write", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--from", dest="source", type=Path, help="render saved counts")
    parser.add_argument("--fuzz", type=Path, help="saved mutated-raster counts (with --from)")
    parser.add_argument("--save", type=Path, help="keep the counts JSON here")
    args = parser.parse_args(argv)
    code = 0
    with tempfile.TemporaryDirectory() as tmp:
        counts = args.source or Path(tmp) / "counts.json"
        fuzz_path = args.fuzz if args.source else Path(tmp) / "fuzz.json"
        if args.source is None:
            code = run_tests(args.slow, counts, fuzz_path)
        rows = json.loads(counts.read_text())
        fuzz = json.loads(fuzz_path.read_text()) if fuzz_path and fuzz_path.exists() else None
        if isinstance(rows, dict):  # a file written by --save
            rows, fuzz = rows["rows"], rows["fuzz"]
        if args.save:
            args.save.write_text(json.dumps({"rows": rows, "fuzz": fuzz}, indent=1) + "\n")
    table = render(rows, fuzz)
    print(table)
    if args.write:
        write_doc(table)
    return 0 if code in (0, 5) else code


if __name__ == "__main__":
    raise SystemExit(main())
