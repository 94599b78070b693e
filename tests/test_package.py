"""The package's public surface and CLI frame."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import rsgan
from rsgan.cli._options import parse_bands
from rsgan.cli.main import cli
from rsgan.errors import ConfigError, RsganError


def test_version_and_help() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert rsgan.__version__ in result.output


def test_unknown_public_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        rsgan.no_such_name  # noqa: B018


@pytest.mark.parametrize(
    ("text", "expected"), [("1,2,3", (1, 2, 3)), (" 4 , 1", (4, 1)), ("", None), (None, None)]
)
def test_parse_bands(text: str | None, expected: tuple[int, ...] | None) -> None:
    assert parse_bands(text) == expected


@pytest.mark.parametrize("text", ["0", "1,x", "1,1", "-2"])
def test_parse_bands_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="band"):
        parse_bands(text)
    assert issubclass(ConfigError, RsganError) and issubclass(ConfigError, ValueError)


def test_dir_lists_the_public_api_only() -> None:
    import rsgan

    names = [n for n in dir(rsgan) if not n.startswith("__")]
    assert names == sorted(n for n in rsgan.__all__ if not n.startswith("__"))
    assert "__version__" in dir(rsgan)


def test_python_m_rsgan_is_the_command(tmp_path: Path) -> None:
    """Schedulers that call ``sys.executable -m rsgan`` (no script on PATH) get the
    command, its exit codes included; it was "'rsgan' is a package and cannot be directly
    executed"."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ok = subprocess.run([sys.executable, "-m", "rsgan", "--version"], capture_output=True,
                        text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.startswith("rsgan, version"), ok.stderr
    missing = tmp_path / "none.tif"
    bad = subprocess.run([sys.executable, "-m", "rsgan", "info", str(missing)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("Error: no such file"), bad.stderr
