"""Untrusted files: checkpoints never unpickle code, catalogs cannot write outside OUT_DIR,
and no output is ever written over an input (same path, another spelling, a symlink, a hard
link, or a folder that holds the input)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rsgan.checkpoint import load_model, load_train_state
from rsgan.cli.main import cli
from rsgan.errors import CheckpointError, RsganError
from rsgan.pipelines.augment import augment_segmentation_dataset
from rsgan.pipelines.catalog import translate_catalog
from rsgan.pipelines.translate import translate_raster
from rsgan.tiling import TileSpec, export_chips

from .conftest import files_under, valid_scene

IDENTITY = torch.nn.Identity()
FAST = {"tile": 32, "overlap": 8, "progress": False}


def _digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (links not followed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# --------------------------------------------------------------------------- checkpoints


def test_safetensors_checkpoints_load_without_any_unpickling(checkpoints, monkeypatch, tally):
    tally.add("load_model", "unpickling forbidden while loading")

    def forbidden(*args, **kwargs):
        raise AssertionError("load_model unpickled something")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    model = load_model(checkpoints["good"])
    assert model.kind == "cyclegan"


PICKLES = ["pickle_pt", "pickle_pth", "pickle_st", "torch_save_pickle"]


@pytest.mark.parametrize(
    ("load", "name"),
    [(load, n) for load in (load_model, load_train_state) for n in PICKLES],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_code_carrying_pickles_never_run(checkpoints, load, name, tally) -> None:
    tally.add(load.__name__, "pickle that runs code")
    with pytest.raises(CheckpointError):
        load(checkpoints[name])
    assert not checkpoints["marker"].exists(), f"{name} ran code"


def test_legacy_weights_only_file_still_loads(checkpoints, tmp_path, tally) -> None:
    """The legacy path is restricted, not disabled: plain tensors and JSON metadata load."""
    from safetensors import safe_open

    tally.add("load_model", "legacy .pt with tensors only (loads)")
    with safe_open(str(checkpoints["good"]), framework="pt") as fh:
        meta = fh.metadata()["rsgan"]
        weights = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    legacy = tmp_path / "legacy.pt"
    torch.save({"rsgan": meta, "weights": weights}, legacy)
    assert load_model(legacy).kind == "cyclegan"


def test_a_header_claiming_exabytes_is_refused_without_allocating(tmp_path, tally) -> None:
    tally.add("load_model", "safetensors header length 2**62")
    path = tmp_path / "huge_header.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match="huge_header"):
        load_model(path)


# --------------------------------------------------------------------------- catalogs


def _stac(path: Path, ids: list[str], href: Path) -> Path:
    items = [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": item_id,
            "geometry": None,
            "properties": {"datetime": "2020-01-01T00:00:00Z"},
            "links": [],
            "assets": {"image": {"href": str(href), "type": "image/tiff; application=geotiff"}},
        }
        for item_id in ids
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


ESCAPES = ["../escaped", "../../escaped", "/tmp/escaped_abs", "a/../../escaped", "..", "x\\..\\y"]


def test_stac_ids_cannot_write_outside_out_dir(tmp_path, snapshot, tally) -> None:
    tally.add("translate_catalog", "STAC id escaping OUT_DIR", len(ESCAPES))
    scene = valid_scene(tmp_path / "data" / "scene.tif")
    catalog = _stac(tmp_path / "data" / "items.json", ESCAPES, scene)
    out = tmp_path / "deep" / "out"
    new = snapshot(tmp_path)
    manifest = translate_catalog(catalog, out, IDENTITY, workers=0, **FAST)
    assert (manifest.status == "failed").all(), manifest[["scene", "status"]]
    outside = {n for n in new() if not n.startswith("deep")}
    assert outside == set(), f"written outside OUT_DIR: {outside}"
    assert not Path("/tmp/escaped_abs_translated.tif").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_symlinks_in_out_dir_never_write_through(tmp_path, overwrite, tally) -> None:
    """A planted link at an output name (the raster or its STAC Item) must not let the
    batch overwrite the file it points to, even with overwrite."""
    tally.add("translate_catalog", "symlink planted at an output name", 2)
    scenes = tmp_path / "scenes"
    valid_scene(scenes / "a.tif")
    valid_scene(scenes / "b.tif", seed=1)
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "precious.tif").write_bytes(b"precious raster")
    (victims / "precious.json").write_text("precious json")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_translated.tif").symlink_to(victims / "precious.tif")
    (out / "b_translated.json").symlink_to(victims / "precious.json")
    before = _digest(victims)
    translate_catalog(scenes, out, IDENTITY, workers=0, overwrite=overwrite, **FAST)
    assert _digest(victims) == before


# --------------------------------------------------------------------------- inputs


def _spellings(src: Path, tmp_path: Path) -> dict[str, Path]:
    link = tmp_path / "link.tif"
    link.symlink_to(src)
    hard = tmp_path / "hard.tif"
    os.link(src, hard)
    dotted = src.parent / ".." / src.parent.name / "." / src.name
    return {"same path": src, "dotted path": dotted, "symlink": link, "hard link": hard}


@pytest.mark.parametrize("overwrite", [False, True])
def test_translate_never_writes_over_its_input(tmp_path, overwrite, tally) -> None:
    src = valid_scene(tmp_path / "data" / "scene.tif")
    before = _digest(tmp_path / "data")
    for how, dst in _spellings(src, tmp_path).items():
        tally.add("translate_raster", f"output = input ({how})")
        with pytest.raises(RsganError, match="input"):
            translate_raster(src, dst, IDENTITY, overwrite=overwrite, **FAST)
    assert _digest(tmp_path / "data") == before


def test_cli_translate_never_writes_over_its_input(tmp_path, checkpoints, tally) -> None:
    src = valid_scene(tmp_path / "data" / "scene.tif")
    before = src.read_bytes()
    for how, dst in _spellings(src, tmp_path).items():
        tally.add("rsgan translate", f"output = input ({how})")
        result = CliRunner().invoke(
            cli,
            ["translate", str(src), str(dst), "--model", str(checkpoints["good"]), "--overwrite"],
        )
        assert result.exit_code == 1 and "input" in result.output, result.output
    assert src.read_bytes() == before


@pytest.mark.parametrize("target", ["input", "dst"])
def test_quicklook_never_writes_over_the_input_or_the_output(
    tmp_path, checkpoints, target, tally
) -> None:
    tally.add("rsgan translate", f"--quicklook = {target} (overwrite)")
    src = valid_scene(tmp_path / "scene.tif")
    dst = tmp_path / "o.tif"
    quicklook = src if target == "input" else dst
    before = src.read_bytes()
    result = CliRunner().invoke(
        cli,
        ["translate", str(src), str(dst), "--model", str(checkpoints["good"]),
         "--quicklook", str(quicklook), "--overwrite", "-q"],
    )  # fmt: skip
    assert src.read_bytes() == before, "the input scene was replaced by a PNG"
    # refused before any work: DST was never written (so it cannot be a PNG either)
    assert not dst.exists(), "DST was written although the quicklook path was refused"
    assert result.exit_code == 1, result.output
    assert "quicklook" in result.output, result.output


def test_chips_out_folder_holding_the_scene_is_refused(tmp_path, tally) -> None:
    """`rsgan chips data/scene.tif --out data --overwrite` must not delete data/."""
    tally.add("export_chips", "output folder = the scene's folder (overwrite)")
    src = valid_scene(tmp_path / "data" / "scene.tif")
    before = _digest(tmp_path / "data")
    with pytest.raises(RsganError):
        export_chips([src], tmp_path / "data", TileSpec(16, 0), overwrite=True, progress=False)
    assert _digest(tmp_path / "data") == before


def test_chips_out_folder_above_the_scene_is_refused(tmp_path, tally) -> None:
    tally.add("export_chips", "output folder = a parent of the scene (overwrite)")
    src = valid_scene(tmp_path / "project" / "data" / "scene.tif")
    before = _digest(tmp_path / "project")
    with pytest.raises(RsganError):
        export_chips([src], tmp_path / "project", TileSpec(16, 0), overwrite=True, progress=False)
    assert _digest(tmp_path / "project") == before


def test_generate_out_folder_holding_the_checkpoint_is_refused(tmp_path, tally) -> None:
    """`rsgan generate run/model.safetensors --out run --overwrite` must not delete the run."""
    from rsgan.models import DCGANConfig
    from rsgan.training import generate

    tally.add("generate", "output folder = the checkpoint's folder (overwrite)")
    run = tmp_path / "run"
    _tiny_dcgan(run / "model.safetensors", DCGANConfig(image_size=64, nz=8, ngf=4, ndf=4))
    before = _digest(run)
    with pytest.raises(RsganError):
        generate(run / "model.safetensors", 2, run, overwrite=True, device="cpu")
    assert _digest(run) == before


def _tiny_dcgan(path: Path, config) -> Path:
    from rsgan.checkpoint import DomainInfo, save_checkpoint
    from rsgan.io import Normalizer
    from rsgan.models import build_nets

    path.parent.mkdir(parents=True)
    domain = DomainInfo(
        bands=None, count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    return save_checkpoint(
        path,
        kind="dcgan",
        config=config,
        nets=build_nets("dcgan", config),
        domains={"data": domain},
    )


def test_augment_out_dir_over_its_inputs_never_overwrites_them(tmp_path, tally) -> None:
    """out/images/<stem>.tif and out/masks/<stem>.tif are the inputs when OUT is their
    parent folder: they must be refused, not replaced."""
    tally.add("augment_segmentation_dataset", "outputs = inputs (overwrite)")
    root = tmp_path / "ds"
    valid_scene(root / "images" / "a.tif")
    valid_scene(root / "masks" / "a.tif", count=1)
    before = _digest(root)
    with pytest.raises(RsganError):
        augment_segmentation_dataset(
            root / "images", root / "masks", IDENTITY, root, overwrite=True, **FAST
        )
    after = _digest(root)
    assert {k: v for k, v in after.items() if k in before} == before


def test_batch_never_replaces_a_file_it_did_not_write(tmp_path, tally) -> None:
    """OUT_DIR is the scene folder and holds a user's x_translated.tif: the batch treats
    it as an output name (not a scene) and, without overwrite, must leave it alone."""
    tally.add("translate_catalog", "foreign file at an output name")
    folder = tmp_path / "scenes"
    valid_scene(folder / "x.tif")
    valid_scene(folder / "x_translated.tif", seed=3)
    before = _digest(folder)
    manifest = translate_catalog(folder, folder, IDENTITY, workers=0, **FAST)
    assert manifest.status.tolist() == ["failed"]
    assert "was not written by an earlier run" in manifest.error.iloc[0]
    assert _digest(folder) == before | {"manifest.parquet": _digest(folder)["manifest.parquet"]}


def test_failed_security_checks_leave_nothing(tmp_path, snapshot, tally) -> None:
    tally.add("translate_raster", "refused output leaves nothing")
    src = valid_scene(tmp_path / "scene.tif")
    new = snapshot(tmp_path)
    with pytest.raises(RsganError):
        translate_raster(src, src, IDENTITY, overwrite=True, **FAST)
    assert new() == set()
    assert files_under(tmp_path) == {"scene.tif"}
