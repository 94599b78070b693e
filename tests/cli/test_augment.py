"""`rsgan augment`: writes pairs and an index; a bad pair gives exit code 1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner, Result

from rsgan.cli.main import cli

from .test_batch import tiny_checkpoint


@pytest.fixture
def pairs(make_raster: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    for i in range(2):
        make_raster(f"t{i}.tif", width=40, height=32, seed=i, folder=tmp_path / "img")
        mask = (np.arange(40 * 32).reshape(1, 32, 40) % 3).astype(np.uint8)
        make_raster(f"t{i}.tif", data=mask, folder=tmp_path / "lbl")
    return tmp_path / "img", tmp_path / "lbl"


def _augment(images: Path, masks: Path, out: Path) -> Result:
    model = tiny_checkpoint(out.parent / "tiny.safetensors")
    args = ["--images", images, "--masks", masks, "--model", model, "--out", out]
    return CliRunner().invoke(
        cli, ["augment", *map(str, args), "--tile", "32", "--overlap", "8", "-q"]
    )


def test_augment_writes_pairs(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = pairs
    result = _augment(images, masks, tmp_path / "aug")
    assert result.exit_code == 0, result.output
    assert "2 translated pairs" in result.output
    index = pd.read_csv(tmp_path / "aug" / "index.csv")
    assert int(index["translated"].sum()) == 2
    for stem in ("t0", "t1"):
        with rasterio.open(tmp_path / "aug" / "masks" / f"{stem}.tif") as a:
            with rasterio.open(masks / f"{stem}.tif") as b:
                np.testing.assert_array_equal(a.read(), b.read())


def test_augment_bad_pair_exit_code(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = pairs
    (masks / "t1.tif").unlink()
    result = _augment(images, masks, tmp_path / "aug")
    assert result.exit_code == 1
    assert "1 of 2 pair(s) failed" in result.output and "t1.tif has no mask" in result.output
    assert (tmp_path / "aug" / "masks" / "t0.tif").exists()
