"""Progress bars written to a log (stderr not a terminal) end with one line each.

tqdm draws a bar again when it closes it; when its last update was drawn too, a log got
the 100% line twice. A slow clock makes every update of these small runs draw, as in a
long run, so the runs below show the bug whenever it is there.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import tqdm.std
from click.testing import CliRunner

from rsgan.checkpoint import DomainInfo, save_checkpoint
from rsgan.cli.main import cli
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, build_nets


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm's clock advancing 2 s at each reading: every update is past ``mininterval``
    and ``delay``, so tqdm draws it."""
    ticks = itertools.count(start=1_000_000, step=2)
    monkeypatch.setattr(tqdm.std, "time", lambda: float(next(ticks)))


def _checkpoint(path: Path) -> Path:
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
    torch.manual_seed(0)
    domain = DomainInfo(
        bands=(1, 2, 3), count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    return save_checkpoint(path, kind="cyclegan", config=config,
                           nets=build_nets("cyclegan", config),
                           domains={"a": domain, "b": domain}, generators_only=True)  # fmt: skip


def _chips(scene: Path, tmp_path: Path) -> list[str]:
    return ["chips", str(scene), "--size", "32", "--out", str(tmp_path / "chips")]


def _translate(scene: Path, tmp_path: Path) -> list[str]:
    model = _checkpoint(tmp_path / "m.safetensors")
    return ["translate", str(scene), str(tmp_path / "t.tif"), "--model", str(model),
            "--tile", "32", "--overlap", "8", "--norm", "tile"]  # fmt: skip


def _train(scene: Path, tmp_path: Path) -> list[str]:
    return ["train", "dcgan", str(scene), "--out", str(tmp_path / "run"), "--steps", "3",
            "--batch-size", "2", "--nz", "4", "--ngf", "2", "--ndf", "2",
            "--sample-every", "0"]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "unit"),
    [(_chips, "chip"), (_translate, "tile"), (_train, "step")],
    ids=["chips", "translate", "train"],
)
def test_a_bar_ends_with_one_line_in_a_log(
    make_raster: Callable[..., Path],
    tmp_path: Path,
    slow_clock: None,
    command: Callable[[Path, Path], list[str]],
    unit: str,
) -> None:
    scene = make_raster(width=96, height=80)
    result = CliRunner().invoke(cli, command(scene, tmp_path))
    assert result.exit_code == 0, result.output
    # a log viewer shows each carriage return as a new line
    lines = [line for line in re.split(r"[\r\n]", result.stderr) if line.strip()]
    assert len(lines) > 2, result.stderr  # the updates were drawn
    done = [line for line in lines if "100%" in line]
    assert len(done) == 1, lines
    assert lines[-1] == done[0] and f"{unit}" in done[0]
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1
