"""Checkpoints: round trip, metadata, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from rasterio.enums import ColorInterp

from rsgan import checkpoint as checkpoint_mod
from rsgan.checkpoint import (
    DomainInfo,
    load_model,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from rsgan.errors import CheckpointError, ConfigError, OutputExistsError
from rsgan.io import Normalizer
from rsgan.models import CycleGANConfig, DCGANConfig, build_nets

CONFIG = CycleGANConfig(in_channels_a=4, in_channels_b=3, ngf=4, ndf=4, n_blocks=1)


def _domains() -> dict[str, DomainInfo]:
    norm_a = Normalizer(lo=(0, 10, 20, 30), hi=(1000, 2000, 3000, 4000), dtype="uint16")
    return {
        "a": DomainInfo(
            bands=(1, 2, 3, 4),
            count=4,
            dtype="uint16",
            normalizer=norm_a,
            descriptions=("blue", "green", "red", None),
            colorinterp=("gray", "undefined", "undefined", "undefined"),
        ),
        "b": DomainInfo(
            bands=None, count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
        ),
    }


def _save(path: Path, **kwargs) -> tuple[Path, dict[str, torch.nn.Module]]:  # noqa: ANN003
    torch.manual_seed(0)
    nets = build_nets("cyclegan", CONFIG)
    save_checkpoint(
        path,
        kind="cyclegan",
        config=CONFIG,
        nets=nets,
        domains=_domains(),
        steps=7,
        data={"tiles_a": 12},
        **kwargs,
    )
    return path, nets


def test_domains_keep_colour_interpretation_and_read_older_ones_without() -> None:
    """A domain records its bands' colour interpretation (for the sample grids' colours);
    a domain saved before it was recorded reads as None."""
    domain = _domains()["a"]
    assert DomainInfo.from_dict(domain.to_dict()).colorinterp == domain.colorinterp
    older = {k: v for k, v in domain.to_dict().items() if k != "colorinterp"}
    assert DomainInfo.from_dict(older).colorinterp is None


def test_colour_interpretation_is_stored_by_name_one_per_band() -> None:
    """rasterio's ColorInterp is an IntEnum: ``str`` gave its number on Python 3.11+, so
    (blue, green, red, undefined) was stored as ("5", "4", "3", "0") and sample grids
    showed the wrong bands. Lists of another length than the bands are refused."""
    domain = DomainInfo(
        bands=None,
        count=4,
        dtype="uint16",
        colorinterp=(ColorInterp.blue, ColorInterp.green, "Red", ColorInterp.undefined),
    )
    assert domain.colorinterp == ("blue", "green", "red", "undefined")
    assert DomainInfo.from_dict(domain.to_dict()).colorinterp == domain.colorinterp
    with pytest.raises(ConfigError, match=r"3 band colorinterp .* count=4"):
        DomainInfo(bands=None, count=4, dtype="uint8", colorinterp=("red", "green", "blue"))
    with pytest.raises(ConfigError, match=r"2 band descriptions .* count=3"):
        DomainInfo(bands=None, count=3, dtype="uint8", descriptions=("a", "b"))


def test_round_trip_weights_and_metadata(tmp_path: Path) -> None:
    path, nets = _save(tmp_path / "model.safetensors")
    loaded = load_model(path)
    assert loaded.kind == "cyclegan" and loaded.config == CONFIG and loaded.steps == 7
    assert loaded.domains == _domains()
    assert loaded.in_domain("a2b").normalizer.lo == (0, 10, 20, 30)
    assert loaded.out_domain("a2b").dtype == "uint8"
    assert loaded.in_domain("b2a").count == 3
    assert loaded.metadata["data"] == {"tiles_a": 12}
    assert loaded.metadata["rsgan_version"]
    for name, net in nets.items():
        for key, value in net.state_dict().items():
            torch.testing.assert_close(loaded.nets[name].state_dict()[key], value, rtol=0, atol=0)
    x = torch.rand(1, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator("a2b")(x), nets["G_AB"].eval()(x))
    assert not loaded.generator().training


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path: Path, umask: int) -> None:
    """safetensors writes its files readable by their owner only (0600), so a model
    trained on a shared machine could not be read by the team (or a server) that reads
    everything else the run wrote (train_state.pt, log.jsonl, samples: 0644 under the
    usual umask 022). A checkpoint gets the mode of any new file: 0666 less the umask."""
    old = os.umask(umask)
    try:
        path, _ = _save(tmp_path / "model.safetensors")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask
    load_model(path)


def test_generators_only_is_smaller_and_loads(tmp_path: Path) -> None:
    full, _ = _save(tmp_path / "full.safetensors")
    small, _ = _save(tmp_path / "small.safetensors", generators_only=True)
    assert small.stat().st_size < full.stat().st_size
    loaded = load_model(small)
    assert set(loaded.nets) == {"G_AB", "G_BA"}
    assert loaded.generator("b2a").in_channels == 3


def test_dcgan_round_trip(tmp_path: Path) -> None:
    config = DCGANConfig(channels=1, nz=8, ngf=2, ndf=2)
    nets = build_nets("dcgan", config)
    domains = {"data": DomainInfo(bands=(2,), count=1, dtype="int16")}
    path = save_checkpoint(
        tmp_path / "d.safetensors", kind="dcgan", config=config, nets=nets, domains=domains
    )
    loaded = load_model(path)
    assert loaded.config == config and loaded.out_domain().bands == (2,)
    assert loaded.generator() is loaded.nets["G"]
    with pytest.raises(ConfigError, match="latent"):
        loaded.in_domain()
    with pytest.raises(ConfigError, match="no direction 'a2b'"):
        loaded.generator("a2b")


def test_band_count_mismatch_is_refused(tmp_path: Path) -> None:
    nets = build_nets("cyclegan", CONFIG)
    domains = _domains()
    domains["a"] = DomainInfo(bands=(1, 2, 3), count=3, dtype="uint8")
    with pytest.raises(
        ConfigError, match="domain 'a' has 3 bands but the cyclegan config expects 4"
    ):
        save_checkpoint(
            tmp_path / "m.safetensors", kind="cyclegan", config=CONFIG, nets=nets, domains=domains
        )
    assert not (tmp_path / "m.safetensors").exists()


def test_overwrite_refused_when_asked(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "model.safetensors")
    with pytest.raises(OutputExistsError):
        _save(path, overwrite=False)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("keep", [0, 5, 100, 2000, -10])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    path, _ = _save(tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*(truncated|corrupt)"):
        load_model(path)


def test_corrupt_header(tmp_path: Path) -> None:
    path, _ = _save(tmp_path / "model.safetensors")
    data = bytearray(path.read_bytes())
    data[10:30] = b"\x00" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(path)


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path("/tmp/rsgan-pwned"),))


def test_pickles_are_never_unpickled(tmp_path: Path) -> None:
    marker = Path("/tmp/rsgan-pwned")
    marker.unlink(missing_ok=True)
    as_safetensors = tmp_path / "evil.safetensors"
    as_safetensors.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(as_safetensors)
    as_pt = tmp_path / "evil.pt"
    torch.save({"rsgan": {}, "weights": _Evil()}, as_pt)
    with pytest.raises(CheckpointError, match="without unpickling"):
        load_model(as_pt)
    assert not marker.exists()


def test_a_header_length_starting_with_the_pickle_byte_loads(tmp_path: Path) -> None:
    """A safetensors file begins with its header's length: where that length's low byte is
    0x80, the byte a pickle begins with, the file is still read as the checkpoint it is
    (metadata padded until the length ends so)."""
    path, _ = _save(tmp_path / "model.safetensors")
    (start,) = struct.unpack("<Q", path.read_bytes()[:8])
    for pad in range((0x80 - start) % 256 - 8, (0x80 - start) % 256 + 16):
        _save(path, extra={"pad": "x" * max(pad, 0)})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    assert load_model(path).metadata["extra"]["pad"].startswith("x")


def test_legacy_pt_with_metadata_loads(tmp_path: Path) -> None:
    path, nets = _save(tmp_path / "model.safetensors")
    meta = load_model(path).metadata
    weights = {f"{n}.{k}": v for n, net in nets.items() for k, v in net.state_dict().items()}
    legacy = tmp_path / "model.pt"
    torch.save({"rsgan": json.dumps(meta), "weights": weights}, legacy)
    assert set(load_model(legacy).nets) == set(nets)
    torch.save(weights, legacy)  # a bare state dict: no metadata
    with pytest.raises(CheckpointError, match="no rsgan metadata"):
        load_model(legacy)


def test_missing_metadata_and_wrong_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(bare))
    with pytest.raises(CheckpointError, match="no 'rsgan' metadata"):
        load_model(bare)
    path, _ = _save(tmp_path / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = json.loads(fh.metadata()["rsgan"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    for field, value, bands in (("ngf", 8, None), ("in_channels_a", 3, (1, 2, 3))):
        wrong_meta = json.loads(json.dumps(meta))
        wrong_meta["config"][field] = value  # metadata and weights disagree
        if bands:  # a band-count mismatch, consistent between config and domain
            wrong_meta["domains"]["a"].update(
                bands=list(bands), count=3, normalizer=None, descriptions=None, colorinterp=None
            )
        wrong = tmp_path / f"wrong_{field}.safetensors"
        save_file(tensors, str(wrong), metadata={"rsgan": json.dumps(wrong_meta)})
        with pytest.raises(CheckpointError, match="do not fit the stored cyclegan architecture"):
            load_model(wrong)
    meta["config"]["ngf"] = 8
    wrong = tmp_path / "wrong.safetensors"
    save_file(tensors, str(wrong), metadata={"rsgan": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="do not fit the stored cyclegan architecture"):
        load_model(wrong)


def test_train_state_round_trip_and_errors(tmp_path: Path) -> None:
    state = {
        "step": 3,
        "rng": torch.get_rng_state(),
        "py": [1, [2, 3], None],
        "opt": torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]).state_dict(),
    }
    path = save_train_state(tmp_path / "train_state.pt", state)
    back = load_train_state(path)
    assert back["step"] == 3 and torch.equal(back["rng"], state["rng"])
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_train_state(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_train_state(tmp_path / "none.pt")


def test_the_default_model_is_found_without_the_pipelines(tmp_path: Path) -> None:
    """``load_model(None)`` finds the default model in rsgan.checkpoint (it imported
    rsgan.pipelines.translate, against the package's one-way imports), and a missing one
    is a ModelError; translate re-exports the names."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from rsgan import checkpoint
        from rsgan.errors import ModelError
        assert checkpoint.load_model(None).path == checkpoint.DEFAULT_MODEL_PATH
        os.environ["RSGAN_MODEL"] = {str(tmp_path / "nope.safetensors")!r}
        try:
            checkpoint.load_model(None)
        except ModelError as exc:
            assert "$RSGAN_MODEL is" in str(exc), exc
        else:
            raise AssertionError("no ModelError")
        assert "rsgan.pipelines.translate" not in sys.modules, "imported the pipelines"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "RSGAN_MODEL": ""})
    from rsgan.pipelines import translate

    assert translate.default_model_path is checkpoint_mod.default_model_path
    assert translate.DEFAULT_MODEL_PATH == checkpoint_mod.DEFAULT_MODEL_PATH
