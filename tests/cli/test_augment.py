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


def _augment(images: Path, masks: Path, out: Path, *extra: str) -> Result:
    model = tiny_checkpoint(out.parent / "tiny.safetensors")
    args = ["--images", images, "--masks", masks, "--model", model, "--out", out]
    return CliRunner().invoke(
        cli, ["augment", *map(str, args), "--tile", "32", "--overlap", "8", "-q", *extra]
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
    assert result.exit_code == 3  # finished, some pairs failed (as rsgan batch's scenes)
    assert "1 of 2 pair(s) failed" in result.output and "t1.tif has no mask" in result.output
    assert "Error:" not in result.output and "Traceback" not in result.output
    last = "1 pair(s) failed (exit code 3); fix them and rerun with --overwrite"
    assert result.output.splitlines()[-1] == last
    assert (tmp_path / "aug" / "masks" / "t0.tif").exists()


def test_augment_bands_option_as_the_band_error_says(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """4-band images and a 3-band model: the error names --bands, which exists and works."""
    for i in range(2):
        make_raster(f"t{i}.tif", width=40, height=32, count=4, seed=i, folder=tmp_path / "img")
        mask = (np.arange(40 * 32).reshape(1, 32, 40) % 3).astype(np.uint8)
        make_raster(f"t{i}.tif", data=mask, folder=tmp_path / "lbl")
    refused = _augment(tmp_path / "img", tmp_path / "lbl", tmp_path / "aug")
    assert refused.exit_code == 3 and "(--bands 1,2,3)" in refused.output  # every pair failed
    done = _augment(tmp_path / "img", tmp_path / "lbl", tmp_path / "aug2", "--bands", "1,2,3")
    assert done.exit_code == 0, done.output
    index = pd.read_csv(tmp_path / "aug2" / "index.csv", dtype={"bands": str})
    assert list(index[~index["translated"]]["bands"]) == ["1,2,3"] * 2
