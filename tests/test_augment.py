"""augment_segmentation_dataset and MixedSegmentationDataset with the real translate_raster."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import torch
from affine import Affine

from rsgan.errors import ConfigError, OutputExistsError
from rsgan.io import Normalizer, NotGeoreferencedWarning, describe
from rsgan.pipelines.augment import (
    AugmentError,
    MixedSegmentationDataset,
    PairError,
    augment_segmentation_dataset,
    copy_mask_to_grid,
    load_index,
)

FAST = {"tile": 64, "overlap": 16, "progress": False}
GRID = Affine(0.5, 0.0, 360000.0, 0.0, -0.5, 4100000.0)
COLORS = {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 0, 255, 255)}


class Negate(torch.nn.Module):
    """A 'translation' that is easy to check: uint8 v -> 255 - v."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def _mask(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 3, size=(1, height, width), dtype=np.uint8)
    mask[:, :3, :] = 255  # an ignore/nodata border
    return mask


def _write_mask(path: Path, data: np.ndarray, transform: Affine | None, crs: str | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": 1,
        "dtype": "uint8",
        "nodata": 255,
    }
    if transform is not None:
        profile.update(transform=transform, crs=crs)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.write_colormap(1, COLORS)
    return path


@pytest.fixture
def pairs(make_raster: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    for i in range(6):
        transform = GRID @ Affine.translation(100 * i, 0)
        make_raster(
            f"tile_{i}.tif",
            width=48,
            height=40,
            seed=i,
            folder=images,
            crs="EPSG:26915",
            transform=transform,
        )
        _write_mask(masks / f"tile_{i}.tif", _mask(i), transform, "EPSG:26915")
    return images, masks


def _read(path: Path | str) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        grid = {
            "crs": src.crs,
            "transform": src.transform,
            "shape": (src.height, src.width),
            "nodata": src.nodata,
        }
        return src.read(), grid


def test_masks_are_copied_pixel_for_pixel_on_the_translated_grid(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    images, masks = pairs
    out = tmp_path / "aug"
    index = augment_segmentation_dataset(images, masks, Negate(), out, **FAST)
    assert len(index) == 12 and int(index["translated"].sum()) == 6
    for row in index[index["translated"]].itertuples():
        translated, t_grid = _read(out / row.image)
        source, s_grid = _read(row.source_image)
        np.testing.assert_array_equal(translated, 255 - source)  # it was translated
        copied, m_grid = _read(out / row.mask)
        original, o_grid = _read(row.source_mask)
        assert copied.dtype == original.dtype
        np.testing.assert_array_equal(copied, original)
        assert {k: m_grid[k] for k in ("crs", "transform", "shape")} == {
            k: t_grid[k] for k in ("crs", "transform", "shape")
        }
        assert t_grid["transform"] == s_grid["transform"] and t_grid["crs"] == s_grid["crs"]
        assert m_grid["nodata"] == o_grid["nodata"] == 255
        with rasterio.open(out / row.mask) as src:
            assert {k: src.colormap(1)[k] for k in COLORS} == COLORS
    on_disk = pd.read_csv(out / "index.csv")
    assert list(on_disk.columns) == list(index.columns)
    assert len(on_disk) == 12
    assert not Path(on_disk["image"][1]).is_absolute()  # the folder can be moved
    sample = MixedSegmentationDataset(index, translated_ratio=1.0)[0]  # the returned frame
    assert sample["translated"] and sample["mask"].shape == (40, 48)


def test_misaligned_and_unpaired_files_fail_alone(
    pairs: tuple[Path, Path], make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    images, masks = pairs
    _write_mask(masks / "tile_1.tif", _mask(1), GRID @ Affine.translation(101, 0), "EPSG:26915")
    _write_mask(
        masks / "tile_2.tif", _mask(2, height=41), GRID @ Affine.translation(200, 0), "EPSG:26915"
    )
    _write_mask(masks / "tile_3.tif", _mask(3), GRID @ Affine.translation(300, 0), "EPSG:32615")
    make_raster("lonely.tif", width=48, height=40, folder=images)
    with pytest.raises(AugmentError) as caught:
        augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    failures = caught.value.failures
    assert sorted(failures) == ["lonely", "tile_1", "tile_2", "tile_3"]
    assert "different transforms" in failures["tile_1"] and "tile_1.tif" in failures["tile_1"]
    assert "differ in size: 48x40 vs 48x41" in failures["tile_2"]
    assert "different CRSs" in failures["tile_3"]
    assert "has no mask" in failures["lonely"]
    index = pd.read_csv(tmp_path / "aug" / "index.csv")
    assert sorted(Path(p).stem for p in index["image"][index["translated"]]) == [
        "tile_0",
        "tile_4",
        "tile_5",
    ]
    assert not (tmp_path / "aug" / "masks" / "tile_1.tif").exists()


def test_plain_image_chips(tmp_path: Path) -> None:
    images, masks = tmp_path / "img", tmp_path / "lbl"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        with rasterio.open(
            images / f"c{i}.png", "w", driver="PNG", width=32, height=32, count=3, dtype="uint8"
        ) as dst:
            dst.write(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
        with rasterio.open(
            masks / f"c{i}.png", "w", driver="PNG", width=32, height=32, count=1, dtype="uint8"
        ) as dst:
            dst.write(rng.integers(0, 2, (1, 32, 32), dtype=np.uint8) * 255)
    with pytest.warns(NotGeoreferencedWarning) as caught:
        index = augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    # one warning for the run, not one per image, mask and output (six here)
    assert len([w for w in caught if w.category is NotGeoreferencedWarning]) == 1
    assert "2 of 2 pair(s) have no CRS (c0, c1)" in str(caught[0].message)
    for row in index[index["translated"]].itertuples():
        copied, grid = _read(tmp_path / "aug" / row.mask)
        np.testing.assert_array_equal(copied, _read(row.source_mask)[0])
        np.testing.assert_array_equal(
            _read(tmp_path / "aug" / row.image)[0], 255 - _read(row.source_image)[0]
        )
        assert grid["crs"] is None and grid["shape"] == (32, 32)


def test_bands_selection_applies_to_the_original_samples_too(tmp_path: Path) -> None:
    """4-band images translated with bands=(3, 2, 1): original and translated samples both
    have those three bands (the originals used to keep all four: mixed batches failed)."""
    images, masks = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    images.mkdir(parents=True)
    for i in range(2):
        transform = GRID @ Affine.translation(100 * i, 0)
        with rasterio.open(
            images / f"t{i}.tif", "w", driver="GTiff", width=48, height=40, count=4,
            dtype="uint8", crs="EPSG:26915", transform=transform,
            photometric="MINISBLACK",  # NAIP-like R, G, B, NIR: no alpha band
        ) as dst:  # fmt: skip
            dst.write(np.random.default_rng(i).integers(0, 256, (4, 40, 48), dtype=np.uint8))
        _write_mask(masks / f"t{i}.tif", _mask(i), transform, "EPSG:26915")
    out = tmp_path / "aug"
    index = augment_segmentation_dataset(images, masks, Negate(), out, bands=(3, 2, 1), **FAST)
    assert list(index[~index["translated"]]["bands"]) == ["3,2,1"] * 2
    assert list(index[index["translated"]]["bands"]) == [""] * 2
    for ratio in (0.0, 1.0):
        for sample in MixedSegmentationDataset(out / "index.csv", translated_ratio=ratio):
            assert sample["image"].shape == (3, 40, 48)
    original = MixedSegmentationDataset(out / "index.csv", translated_ratio=0.0)[0]["image"]
    source, _ = _read(images / "t0.tif")
    expected = Normalizer.for_dtype("uint8", 3).normalize(source[[2, 1, 0]])
    np.testing.assert_allclose(original.numpy(), expected, atol=1e-6)
    translated = MixedSegmentationDataset(out / "index.csv", translated_ratio=1.0)[0]["image"]
    np.testing.assert_allclose(translated.numpy(), -expected, atol=1e-2)


def test_index_without_a_bands_column_reads_all_bands(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    images, masks = pairs
    augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    table = pd.read_csv(tmp_path / "aug" / "index.csv").drop(columns=["bands"])
    table.to_csv(tmp_path / "aug" / "old.csv", index=False)  # an index from before the column
    sample = MixedSegmentationDataset(tmp_path / "aug" / "old.csv", translated_ratio=0.0)[0]
    assert sample["image"].shape == (3, 40, 48)


def test_existing_outputs_need_overwrite(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = pairs
    augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        augment_segmentation_dataset(images, masks, torch.nn.Identity(), tmp_path / "aug", **FAST)
    index = augment_segmentation_dataset(
        images, masks, torch.nn.Identity(), tmp_path / "aug", overwrite=True, **FAST
    )
    row = index[index["translated"]].iloc[0]
    np.testing.assert_array_equal(
        _read(tmp_path / "aug" / row["image"])[0], _read(row["source_image"])[0]
    )


def test_index_written_from_relative_paths_loads_from_anywhere(
    pairs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    returned = augment_segmentation_dataset(
        Path("src/images"), Path("src/masks"), Negate(), "aug", **FAST
    )
    # the returned index (documented: absolute paths) stays valid after a chdir
    assert all(Path(p).is_absolute() for c in ("image", "mask") for p in returned[c])
    assert len(load_index(Path("aug/index.csv"))) == 12  # a relative index path
    assert all(Path(p).is_absolute() for p in load_index(Path("aug/index.csv"))["image"])
    monkeypatch.chdir(tmp_path / "src")  # elsewhere: the index alone must locate every file
    table = load_index(tmp_path / "aug" / "index.csv")
    assert len(table) == 12
    for column in ("image", "mask", "source_image", "source_mask"):
        assert all(Path(p).is_file() for p in table[column]), column


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (0.5, 3), (0.34, 2), (1.0, 6)])
def test_mixed_dataset_mixes_at_the_ratio(
    pairs: tuple[Path, Path], tmp_path: Path, ratio: float, expected: int
) -> None:
    images, masks = pairs
    augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    data = MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=ratio, seed=1)
    assert len(data) == 6 and sum(data.translated) == expected
    for i in range(len(data)):
        sample = data[i]
        stem = f"tile_{i}"
        source, _ = _read(images / f"{stem}.tif")
        pixels = 255 - source if sample["translated"] else source
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 40, 48)
        np.testing.assert_allclose(sample["image"].numpy(), pixels / 255.0 * 2 - 1, atol=1e-6)
        assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (40, 48)
        np.testing.assert_array_equal(sample["mask"].numpy(), _mask(i)[0])
    again = MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=ratio, seed=1)
    assert again.translated == data.translated


def test_mixed_dataset_refuses_bad_ratios(pairs: tuple[Path, Path], tmp_path: Path) -> None:
    images, masks = pairs
    index = augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=1.5)
    # drop four translated rows: a ratio of 0.5 (3 of 6) is then impossible
    trimmed = index.drop(index[index["translated"]].index[:4])
    trimmed.to_csv(tmp_path / "aug" / "trimmed.csv", index=False)
    with pytest.raises(ConfigError, match="needs 3 translated pairs but the index has 2"):
        MixedSegmentationDataset(tmp_path / "aug" / "trimmed.csv", translated_ratio=0.5)


def test_mixed_dataset_takes_an_index_dataframe_as_pandas_reads_it(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A DataFrame index (documented) without the bands column, or read back by pandas
    with a lone band as 1.0 and empty cells as NaN, gives the same samples as the file."""
    images, masks = pairs
    augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", bands=(2,), **FAST)
    by_file = MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=0.5)
    table = load_index(tmp_path / "aug" / "index.csv")
    as_read = table.assign(bands=[1.0 * int(b) if b else np.nan for b in table["bands"]])
    without = table.drop(columns=["bands"])
    for frame in (as_read, without):
        mixed = MixedSegmentationDataset(frame, translated_ratio=0.5)
        assert len(mixed) == len(by_file)
    assert MixedSegmentationDataset(as_read, translated_ratio=0.0)[0]["image"].shape[0] == 1
    assert MixedSegmentationDataset(without, translated_ratio=0.0)[0]["image"].shape[0] == 3


def test_a_failing_pairs_warnings_are_kept(
    pairs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings a pair gives before it fails reach the caller (they may explain it)."""
    import rsgan.pipelines.augment as augment_mod
    from rsgan.errors import RasterWriteError

    images, masks = pairs
    real = augment_mod.copy_mask_to_grid

    def warn_then_fail(mask, info, out, **kw):  # noqa: ANN001, ANN003, ANN202
        if "tile_1" in str(mask):
            warnings.warn("a hint about tile_1", UserWarning, stacklevel=1)
            raise RasterWriteError("tile_1 cannot be written")
        return real(mask, info, out, **kw)

    monkeypatch.setattr(augment_mod, "copy_mask_to_grid", warn_then_fail)
    with pytest.warns(UserWarning, match="a hint about tile_1"), pytest.raises(AugmentError):
        augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)


def test_images_named_by_vrt_urls_as_the_dtype_error_advises(
    make_raster: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uint16 4-band images read as 8-bit RGB through ``vrt://`` names (what the error of
    an 8-bit model on uint16 data tells the user to pass): pathlib used to fold them into
    ``vrt:/...``, and every pair failed as "no such file"."""
    monkeypatch.chdir(tmp_path)
    names, masks = [], []
    for i in range(2):
        transform = GRID @ Affine.translation(100 * i, 0)
        make_raster(f"s2_{i}.tif", width=48, height=40, count=4, dtype="uint16", seed=i,
                    folder=tmp_path / "src", crs="EPSG:26915", transform=transform)  # fmt: skip
        names.append(f"vrt://src/s2_{i}.tif?bands=3,2,1&ot=Byte&scale=0,1000,0,255")
        masks.append(_write_mask(tmp_path / "lbl" / f"s2_{i}.tif", _mask(i), transform,
                                 "EPSG:26915"))  # fmt: skip
    index = augment_segmentation_dataset(names, masks, Negate(), "aug", **FAST)
    assert sorted(Path(p).name for p in index["image"][index["translated"]]) == [
        "s2_0.tif",
        "s2_1.tif",
    ]
    original = index["image"][~index["translated"]].iloc[0]
    assert original.startswith("vrt:///") and original.endswith("&scale=0,1000,0,255")
    monkeypatch.chdir(tmp_path / "lbl")  # the index alone locates every file
    for ratio in (0.0, 1.0):
        sample = MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=ratio)[0]
        with rasterio.open(original) as src:  # 8-bit, bands 3, 2, 1
            expected = Normalizer.for_dtype("uint8", 3).normalize(src.read())
        np.testing.assert_allclose(sample["image"].numpy(), -expected if ratio else expected,
                                   atol=1e-2)  # fmt: skip
        np.testing.assert_array_equal(sample["mask"].numpy(), _mask(0)[0])


def test_images_given_as_their_own_masks_are_refused(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    """The images' folder given as the masks too (a slip): every image used to be paired
    with itself and written as its own 3-band "mask", and the samples took its red band
    for class labels, with no error."""
    images, _ = pairs
    with pytest.raises(AugmentError) as caught:
        augment_segmentation_dataset(images, images, Negate(), tmp_path / "aug", **FAST)
    assert sorted(caught.value.failures) == [f"tile_{i}" for i in range(6)]
    assert "is also its own mask" in caught.value.failures["tile_0"]
    assert list(caught.value.index["image"]) == []
    assert not any((tmp_path / "aug" / "masks").iterdir())


def test_vector_labels_given_as_masks_are_refused_before_any_work(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Building footprints (GeoJSON) given as the masks used to fail every pair as
    "has no mask named ..." / "has no image named joplin_building_footprints.*", after
    creating the output folder; now one error says to rasterise them first."""
    images, _ = pairs
    footprints = tmp_path / "footprints.geojson"
    footprints.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(ConfigError, match=r"footprints\.geojson is a vector file.*rasterize"):
        augment_segmentation_dataset(images, footprints, Negate(), tmp_path / "aug", **FAST)
    assert not (tmp_path / "aug").exists()


def test_a_copied_mask_keeps_its_band_description_and_tags(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The mask's band description and class tags travel with it (only its colour table
    did), its cached statistics do not; it takes the image's grid."""
    image = make_raster("image.tif", width=48, height=40, transform=GRID)
    mask = _write_mask(tmp_path / "mask.tif", _mask(0), None, None)
    with rasterio.open(mask, "r+") as ds:
        ds.set_band_description(1, "land cover")
        ds.update_tags(1, CLASS_1="building", STATISTICS_MAXIMUM="255")
        ds.update_tags(LABELLER="team a")
    out = copy_mask_to_grid(mask, describe(image), tmp_path / "copied.tif")
    with rasterio.open(out) as ds, rasterio.open(image) as grid:
        assert ds.descriptions == ("land cover",)
        assert ds.tags(1) == {"CLASS_1": "building"}
        assert ds.tags()["LABELLER"] == "team a"
        assert {k: ds.colormap(1)[k] for k in COLORS} == COLORS
        assert (ds.crs, ds.transform, ds.nodata) == (grid.crs, grid.transform, 255)


def test_a_mask_in_crs84_pairs_with_an_image_in_epsg_4326(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """OGC:CRS84 (longitude first) and EPSG:4326 (latitude first) differ in axis order
    only, which a geotransform does not see: the grids are the same (they were refused as
    "different CRSs"). A mask in NAD83 (EPSG:4269) is still refused."""
    lonlat = Affine(1e-5, 0.0, -94.5, 0.0, -1e-5, 37.1)
    images, masks = tmp_path / "images", tmp_path / "masks"
    for stem, crs in (("crs84", "OGC:CRS84"), ("nad83", "EPSG:4269")):
        make_raster(f"{stem}.tif", width=48, height=40, folder=images, crs="EPSG:4326",
                    transform=lonlat)  # fmt: skip
        masks.mkdir(exist_ok=True)
        with rasterio.open(
            masks / f"{stem}.png", "w", driver="PNG", width=48, height=40, count=1,
            dtype="uint8", crs=crs, transform=lonlat,
        ) as dst:  # fmt: skip
            dst.write(_mask(0))
    with rasterio.open(masks / "crs84.png") as src:
        assert src.crs.to_string() == "OGC:CRS84"  # the mask's CRS as a PNG keeps it
    with pytest.raises(AugmentError) as caught:
        augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    assert list(caught.value.failures) == ["nad83"]
    assert "different CRSs" in caught.value.failures["nad83"]
    written = caught.value.index
    assert sorted(Path(p).stem for p in written["image"][written["translated"]]) == ["crs84"]
    copied, grid = _read(tmp_path / "aug" / "masks" / "crs84.tif")
    np.testing.assert_array_equal(copied, _mask(0))
    assert grid["crs"] == rasterio.crs.CRS.from_epsg(4326) and grid["transform"] == lonlat


def test_samples_label_the_images_nodata_pixels_ignore_index(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """Pixels an image holds no data for (here a nodata collar of 4 px, and in one band
    only a nodata strip) are labelled ``ignore_index`` (255 by default) and are 0 in the
    image, in original and translated samples (the labels under them were trained on);
    ``ignore_index=None`` keeps the samples as stored."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    data = np.full((3, 40, 48), 100, dtype=np.uint8)
    data[1, 10:12, :] = 7  # band 2 alone has no data in rows 10-11
    make_raster("t.tif", folder=images, data=data, nodata=7, collar=4, transform=GRID,
                crs="EPSG:26915")  # fmt: skip
    labels = _mask(0)  # 0..2 and a 255 border in rows 0-2
    _write_mask(masks / "t.tif", labels, GRID, "EPSG:26915")
    augment_segmentation_dataset(images, masks, Negate(), tmp_path / "aug", **FAST)
    valid = np.zeros((40, 48), dtype=bool)
    valid[4:-4, 4:-4] = True
    valid[10:12] = False
    expected = np.where(valid, labels[0], 255)
    for ratio in (0.0, 1.0):
        sample = MixedSegmentationDataset(tmp_path / "aug" / "index.csv", translated_ratio=ratio)[0]
        np.testing.assert_array_equal(sample["mask"].numpy(), expected)
        image = sample["image"].numpy()
        assert (image[:, ~valid] == 0).all() and (image[:, valid] != 0).all()
        kept = MixedSegmentationDataset(
            tmp_path / "aug" / "index.csv", translated_ratio=ratio, ignore_index=None
        )[0]
        np.testing.assert_array_equal(kept["mask"].numpy(), labels[0])
        other = MixedSegmentationDataset(
            tmp_path / "aug" / "index.csv", translated_ratio=ratio, ignore_index=-100
        )[0]
        np.testing.assert_array_equal(
            other["mask"].numpy(), np.where(valid, labels[0].astype(np.int64), -100)
        )
    with pytest.raises(ConfigError, match=r"ignore_index='255'.*whole number"):
        MixedSegmentationDataset(tmp_path / "aug" / "index.csv", ignore_index="255")


def test_a_mask_not_on_its_images_grid_is_named_when_read(
    pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    images, masks = pairs
    small = _write_mask(tmp_path / "small.tif", _mask(0, height=20), None, None)
    index = pd.DataFrame(
        [
            {
                "image": images / "tile_0.tif",
                "mask": small,
                "source_image": images / "tile_0.tif",
                "source_mask": small,
                "translated": False,
            }
        ]  # fmt: skip
    )
    with pytest.raises(
        PairError, match=r"tile_0.tif is 48x40 px but its mask .*small.tif is 48x20"
    ):
        MixedSegmentationDataset(index, translated_ratio=0.0)[0]
