"""rsgan.data: ChipDataset and UnpairedDataset."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from rsgan.data import ChipDataset, UnpairedDataset
from rsgan.errors import BandError, ConfigError, TileSpecError
from rsgan.io import Normalizer, NotGeoreferencedWarning, compute_band_stats
from rsgan.tiling import TileSpec, chip_index, save_index


def _direct(path: Path, row: int, col: int, size: int, bands=None) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(bands, window=((row, row + size), (col, col + size)))


def test_items_are_normalised_chips_with_masks(make_raster) -> None:
    path = make_raster(width=64, height=48, count=3, nodata=0, collar=4)
    ds = ChipDataset(path, size=32, overlap=16)
    assert len(ds) == len(ds.index) == 3 * 2
    assert ds.count == 3 and ds.bands == (1, 2, 3) and ds.dtype == "uint8"
    assert ds.normalizer == Normalizer.for_dtype("uint8", 3)
    item = ds[4]
    image, mask = item["image"], item["mask"]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert mask.dtype == torch.bool and mask.shape == (32, 32)
    row = ds.index.iloc[4]
    raw = _direct(path, row.row_off, row.col_off, 32)
    valid = (raw != 0).all(axis=0)
    np.testing.assert_array_equal(mask.numpy(), valid)
    expected = np.where(valid, raw / 255.0 * 2 - 1, 0).astype(np.float32)
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-6)
    transform, crs = ds.transform(4)
    assert transform.c == 500000 + 2 * row.col_off and crs.to_epsg() == 32614


def test_uint16_default_normaliser_comes_from_statistics(make_raster) -> None:
    path = make_raster(width=40, height=40, count=2, dtype="uint16")
    ds = ChipDataset(path, size=16, bands=(2, 1))
    stats = compute_band_stats(path, (2, 1))
    assert ds.normalizer == Normalizer.from_stats(stats)
    assert ds.bands == (2, 1) and ds.count == 2
    img = torch.stack([ds[i]["image"] for i in range(len(ds))]).numpy()
    assert -1.2 < img.min() < -0.8 and 0.8 < img.max() < 1.2  # 0.5 / 99.5 percentiles
    with pytest.raises(BandError, match="normaliser has 3 band"):
        ChipDataset(path, size=16, bands=(1, 2), normalizer=Normalizer.for_dtype("uint16", 3))


def test_sources_list_folder_index_and_frame(make_raster, tmp_path: Path) -> None:
    folder = tmp_path / "scenes"
    a = make_raster("a.tif", folder=folder, width=32, height=32, seed=1)
    b = make_raster("b.tif", folder=folder, width=64, height=32, seed=2)
    from_list = ChipDataset([a, b], size=32)
    from_folder = ChipDataset(folder, size=32)
    assert len(from_list) == len(from_folder) == 3
    index = chip_index([a, b], TileSpec(32))
    index_file = save_index(index, tmp_path / "chips.parquet")
    from_file = ChipDataset(index_file, size=32)
    from_frame = ChipDataset(index.iloc[1:], size=32)
    assert len(from_file) == 3 and len(from_frame) == 2
    torch.testing.assert_close(from_file[2]["image"], from_list[2]["image"])
    torch.testing.assert_close(from_frame[0]["image"], from_list[1]["image"])
    with pytest.raises(ConfigError, match="chips of \\[32\\] px but size=16"):
        ChipDataset(index_file, size=16)


def test_plain_image_folder_warns(tmp_path: Path) -> None:
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        arr = np.full((3, 20, 20), 40 * i, np.uint8)
        with rasterio.open(
            folder / f"img{i}.png", "w", driver="PNG", width=20, height=20, count=3, dtype="uint8"
        ) as dst:
            dst.write(arr)
    with pytest.warns(NotGeoreferencedWarning, match="3 of 3 source image"):
        ds = ChipDataset(folder, size=20)
    assert len(ds) == 3
    assert ds[2]["image"].numpy().max() == pytest.approx(80 / 255 * 2 - 1)
    assert ds.index.crs is None


def test_scenes_placed_by_gcps_or_rpcs_are_not_plain_images(tmp_path: Path) -> None:
    """No plain-image warning for scenes placed by ground control points or RPCs; their
    chips' index is in the points' CRS (EPSG:4326 for RPCs)."""
    import warnings

    from tests.conftest import placed_raster

    gcps = placed_raster(tmp_path / "gcps.tif", width=64, height=64)
    rpcs = placed_raster(tmp_path / "rpcs.tif", width=64, height=64, rpcs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        a, b = ChipDataset(gcps, size=32), ChipDataset(rpcs, size=32)
    assert len(a) == len(b) == 4
    assert a.index.crs == "EPSG:32614" and b.index.crs == "EPSG:4326"


def test_small_images_error_or_pad(tmp_path: Path, make_raster) -> None:
    path = make_raster(width=20, height=12, count=1)
    with pytest.raises(TileSpecError, match='edge="pad"'):
        ChipDataset(path, size=16)
    ds = ChipDataset(path, size=16, edge="pad")
    assert len(ds) == 2
    mask = ds[1]["mask"].numpy()
    assert mask[:12, :4].all() and not mask[12:].any() and not mask[:, 4:].any()
    assert (ds[1]["image"].numpy()[:, 12:] == 0).all()


def test_mixed_band_counts_name_both_files(make_raster) -> None:
    a = make_raster("a.tif", count=3)
    b = make_raster("b.tif", count=4)
    with pytest.raises(BandError, match=r"b\.tif has 4 band.*a\.tif has 3"):
        ChipDataset([a, b], size=32)


def test_nodata_filter(make_raster) -> None:
    path = make_raster(width=64, height=64, count=1, nodata=0, collar=8)
    assert len(ChipDataset(path, size=16, max_nodata=0.0)) == 4
    with pytest.raises(ConfigError, match="no chip of 64 px passes the filters"):
        ChipDataset(path, size=64, max_nodata=0.0)


def test_random_chips_are_seeded_and_change_with_epoch(make_raster) -> None:
    path = make_raster(width=90, height=70, count=1, nodata=0, collar=10)
    ds = ChipDataset(path, size=16, random_chips=20, seed=5, max_nodata=0.0)
    assert len(ds) == 20
    first = [ds.chip(i) for i in range(20)]
    again = ChipDataset(path, size=16, random_chips=20, seed=5, max_nodata=0.0)
    assert [again.chip(i) for i in range(20)] == first
    ds.set_epoch(1)
    assert [ds.chip(i) for i in range(20)] != first
    offsets = {(int(w.row_off), int(w.col_off)) for _, w in first}
    assert len(offsets) > 10  # not the 5 x 4 grid
    for i in range(20):
        assert ds[i]["mask"].all()  # max_nodata=0 keeps the collar out
        _, w = ds.chip(i)
        assert 0 <= w.col_off <= 90 - 16 and 0 <= w.row_off <= 70 - 16


def test_dataloader_with_workers(make_raster) -> None:
    path = make_raster(width=64, height=64, count=2, dtype="uint16", nodata=0, collar=3)
    ds = ChipDataset(path, size=32)
    _ = ds[0]  # opens a handle in this process; it must not travel to workers
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[3]["image"], ds[3]["image"])
    loader = DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    images = torch.cat([b["image"] for b in batches])
    masks = torch.cat([b["mask"] for b in batches])
    assert images.shape == (4, 2, 32, 32) and masks.shape == (4, 32, 32)
    for i in range(4):
        torch.testing.assert_close(images[i], ds[i]["image"])
        assert torch.equal(masks[i], ds[i]["mask"])


def test_unpaired_dataset(make_raster) -> None:
    a = ChipDataset(make_raster("a.tif", width=64, height=32, count=3), size=16)  # 8 chips
    b = ChipDataset(make_raster("b.tif", width=48, height=16, count=4, seed=3), size=16)  # 3
    pair = UnpairedDataset(a, b, seed=1)
    assert len(pair) == 8
    item = pair[5]
    assert set(item) == {"a", "a_mask", "b", "b_mask"}
    assert item["a"].shape == (3, 16, 16) and item["b"].shape == (4, 16, 16)
    torch.testing.assert_close(item["a"], a[5]["image"])

    def partners(p: UnpairedDataset) -> list[int]:
        out = []
        for i in range(len(p)):
            img = p[i]["b"]
            out.append(next(j for j in range(len(b)) if torch.equal(b[j]["image"], img)))
        return out

    epoch0 = partners(pair)
    assert sorted(epoch0[:3]) == [0, 1, 2]  # a permutation of b
    assert partners(UnpairedDataset(a, b, seed=1)) == epoch0
    orders = set()
    for epoch in range(6):
        pair.set_epoch(epoch)
        orders.add(tuple(partners(pair)[:3]))
    assert len(orders) > 1
    with pytest.raises(IndexError):
        pair[8]


def test_relative_scene_paths_are_stored_absolute(make_raster, tmp_path: Path, monkeypatch) -> None:
    make_raster("rel.tif", width=32, height=32)
    monkeypatch.chdir(tmp_path)
    ds = ChipDataset("rel.tif", size=32)
    assert ds.index.scene.tolist() == [str(tmp_path / "rel.tif")] == ds.scenes
    monkeypatch.chdir("/")
    assert ds[0]["image"].shape == (3, 32, 32)  # still readable from another folder


def test_a_relative_archive_scene_is_stored_absolute(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """Regression: ``/vsizip/s.zip/rel.tif`` (the archive relative to the working folder)
    was kept as given in the chip index, which then read nothing from another folder."""
    scene = make_raster("rel.tif", width=32, height=32)
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile("s.zip", "w") as archive:
        archive.write(scene, "rel.tif")
    ds = ChipDataset("/vsizip/s.zip/rel.tif", size=32)
    assert ds.index.scene.tolist() == [f"/vsizip/{tmp_path}/s.zip/rel.tif"] == ds.scenes
    monkeypatch.chdir("/")
    assert ds[0]["image"].shape == (3, 32, 32)
