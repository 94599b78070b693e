"""Helpers of the example scripts that need no real data."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import torch

from rsgan.checkpoint import load_model
from rsgan.errors import ConfigError, OutputExistsError
from rsgan.models.cyclegan import ResnetGenerator

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _example(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_blur_generator_starts_from_deconv_weights() -> None:
    """``train_default_model.py --upsample blur --init deconv.safetensors``: the blur
    generator has the same parameters at other positions in its chain; they are copied
    in order, and a generator with other parameters is refused."""
    init_from = _example("train_default_model")._init_from
    torch.manual_seed(0)
    deconv = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample="deconv")
    blur = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample="blur")
    init_from(blur, deconv)
    pairs = list(zip(blur.parameters(), deconv.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    # the same architecture loads by name
    other = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample="blur")
    init_from(other, blur)
    assert all(
        torch.equal(a, b) for a, b in zip(other.parameters(), blur.parameters(), strict=True)
    )
    with pytest.raises(SystemExit, match="other parameters"):
        init_from(blur, ResnetGenerator(3, 3, ngf=8, n_blocks=1, upsample="deconv"))


def test_default_model_train_step_weights_the_periodic_loss() -> None:
    """``train_default_model.py --lambda-periodic`` (the config's ``lambda_periodic``):
    the loss is reported whatever its weight, and only a weight above 0 changes the
    generators' step."""
    from rsgan.models import CycleGANConfig, build_nets

    example = _example("train_default_model")
    g = torch.Generator().manual_seed(1)
    real_a, real_b = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))

    def step(weight: float) -> tuple[dict, list[torch.Tensor]]:
        config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1, lambda_periodic=weight)
        torch.manual_seed(0)
        nets = build_nets("cyclegan", config)
        opt_g = torch.optim.Adam([*nets["G_AB"].parameters(), *nets["G_BA"].parameters()])
        opt_d = torch.optim.Adam([*nets["D_A"].parameters(), *nets["D_B"].parameters()])
        losses = example.train_step(nets, opt_g, opt_d, real_a, real_b, config)
        return losses, [p.detach().clone() for p in nets["G_AB"].parameters()]

    off, w_off = step(0.0)
    again, w_again = step(0.0)
    on, w_on = step(10.0)
    assert off["periodic"] == on["periodic"] > 0  # measured before the update
    assert all(torch.equal(a, b) for a, b in zip(w_off, w_again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(w_off, w_on, strict=True))


def test_spectral_discriminator_learns_to_see_a_stride_grid() -> None:
    """``train_default_model.py --lambda-spectral``: the spectral discriminator's input is
    the 32 px squares' log power spectrum, ``(N, C * 32 * 17)``; trained briefly on smooth
    textures with and without a faint 4 px dot grid (2 % of the range), it tells them
    apart, which a discriminator that could not see the grid would not."""
    example = _example("train_default_model")
    g = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.rand(n, 3, 16, 16, generator=g) * 2 - 1
        clean = torch.nn.functional.interpolate(noise, size=64, mode="bilinear") * 0.8
        dots = torch.zeros(1, 1, 4, 4)
        dots[..., 1, 2] = 0.04
        return clean, clean + dots.repeat(1, 1, 16, 16)

    clean, dotted = batch(4)
    spectrum = example.log_spectrum(clean)
    assert spectrum.shape == (4, 3 * 32 * 17) and torch.isfinite(spectrum).all()
    torch.manual_seed(0)
    d = example.spectral_discriminator(3)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    for _ in range(60):
        clean, dotted = batch(8)
        p_clean, p_dotted = d(example.log_spectrum(clean)), d(example.log_spectrum(dotted))
        loss = (p_dotted - 1).square().mean() + p_clean.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    clean, dotted = batch(16)
    with torch.no_grad():
        p_clean, p_dotted = d(example.log_spectrum(clean)), d(example.log_spectrum(dotted))
    assert float((p_dotted > 0.5).float().mean()) >= 0.9
    assert float((p_clean < 0.5).float().mean()) >= 0.9


def test_default_model_train_step_with_spectral_discriminators() -> None:
    """With ``lambda_spectral`` > 0 and the two spectral discriminators in the nets, a
    step reports their generator loss, changes the generators' step and trains them."""
    from rsgan.models import CycleGANConfig, build_nets

    example = _example("train_default_model")
    g = torch.Generator().manual_seed(1)
    real_a, real_b = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1 for _ in range(2))

    def step(weight: float) -> tuple[dict, list[torch.Tensor], list[torch.Tensor]]:
        config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1)
        torch.manual_seed(0)
        nets = build_nets("cyclegan", config)
        nets["S_A"], nets["S_B"] = (example.spectral_discriminator(3) for _ in range(2))
        before = [p.detach().clone() for p in nets["S_B"].parameters()]
        opt_g = torch.optim.Adam([*nets["G_AB"].parameters(), *nets["G_BA"].parameters()])
        names = ("D_A", "D_B", "S_A", "S_B")
        opt_d = torch.optim.Adam([p for n in names for p in nets[n].parameters()])
        losses = example.train_step(nets, opt_g, opt_d, real_a, real_b, config, weight)
        s_moved = [p.detach() - b for p, b in zip(nets["S_B"].parameters(), before, strict=True)]
        return losses, [p.detach().clone() for p in nets["G_AB"].parameters()], s_moved

    off, w_off, s_off = step(0.0)
    on, w_on, s_on = step(1.0)
    assert off["spectral"] == 0 and on["spectral"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(w_off, w_on, strict=True))
    assert all(not d.any() for d in s_off) and any(d.any() for d in s_on)


def test_default_model_learning_rate_decays_to_zero() -> None:
    """``--decay-steps``: the learning rate holds, then falls in a straight line to zero at
    ``--max-steps``; Adam steps with the scheduler take exactly those rates."""
    tdm = _example("train_default_model")
    opts = tdm.Options(max_steps=10, decay_steps=4, lr=1e-3)
    factors = [tdm.lr_factor(s, opts) for s in range(11)]
    assert factors == [1.0] * 7 + [0.75, 0.5, 0.25, 0.0]
    assert [tdm.lr_factor(s, tdm.Options(max_steps=10)) for s in (0, 9, 10)] == [1.0] * 3
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=opts.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: tdm.lr_factor(s, opts))
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        opt.step()
        schedule.step()
    assert seen == pytest.approx([1e-3] * 7 + [7.5e-4, 5e-4, 2.5e-4])


TINY_DCGAN = ["--steps", "2", "--batch-size", "4", "--ngf", "4", "--ndf", "4", "--no-progress"]
"""farmland_dcgan.py's options for a run of a few seconds."""


def _farmland_images(make_raster, folder: Path, n: int = 6) -> Path:
    """``n`` small 3-band uint8 images of 64 x 128 px: two 64 px chips each."""
    for i in range(n):
        make_raster(f"im{i}.tif", width=128, height=64, seed=i, folder=folder)
    return folder


def test_farmland_example_with_fewer_than_64_held_out_chips(make_raster, tmp_path) -> None:
    """``farmland_dcgan.py --held-out 1`` (2 held-out chips; the real data at ``--size 256``
    gives 20): the run ends with its report and a real-chip grid of the chips there are,
    instead of failing to draw 64 of them after training."""
    data = _farmland_images(make_raster, tmp_path / "images")
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--held-out", "1", "--n-samples", "4"]
    report = _example("farmland_dcgan").main([*args, *TINY_DCGAN])
    assert report["held_out_chips"] == 2 and (out / "report.json").exists()
    with rasterio.open(out / "real_grid.png") as grid:
        assert (grid.height, grid.width) == (64 + 4, 2 * 64 + 6)  # one row of 2, 2 px gaps
    for name in ("samples_grid.png", "noise_grid.png"):
        with rasterio.open(out / name) as grid:
            assert grid.width == 4 * 64 + 10  # the 4 samples, and as many noise images


def test_farmland_example_refuses_more_held_out_than_training_chips(make_raster, tmp_path) -> None:
    """Holding out more chips than are left to train on is refused before training (the
    SWD of real training chips draws one per held-out chip)."""
    data = _farmland_images(make_raster, tmp_path / "images")
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--held-out", "4"]
    with pytest.raises(SystemExit, match="8 held-out chips but only 4 training chips"):
        _example("farmland_dcgan").main([*args, "--n-samples", "8", *TINY_DCGAN])
    assert not (tmp_path / "run" / "train").exists()


def test_an_example_rerun_without_overwrite_is_one_error_line(make_raster, tmp_path) -> None:
    """Run as a script, an example turns an rsgan error (here its earlier run's outputs,
    without ``--overwrite``) into one line ``Error: ...`` on stderr and exit status 1, as
    the ``rsgan`` command does, not a traceback."""
    data = _farmland_images(make_raster, tmp_path / "images")
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--held-out", "1"]
    args += ["--n-samples", "4", *TINY_DCGAN]
    _example("farmland_dcgan").main(args)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    again = subprocess.run(
        [sys.executable, str(EXAMPLES / "farmland_dcgan.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert again.returncode == 1, again.stderr
    assert again.stderr.startswith("Error: ") and again.stderr.count("\n") == 1, again.stderr
    assert "already holds a training run" in again.stderr and "--overwrite" in again.stderr


def test_run_main_passes_other_exits_and_errors_through(capsys, monkeypatch) -> None:
    """``_common.run_main``: only rsgan errors become the one line; a ``SystemExit`` of
    the example's own (a refused option) and other exceptions keep their behaviour."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from _common import run_main

    def exists() -> None:
        raise OutputExistsError("out.tif exists; pass --overwrite")

    with pytest.raises(SystemExit) as exit_info:
        run_main(exists)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "Error: out.tif exists; pass --overwrite\n"
    with pytest.raises(SystemExit, match="--held-out 0"):
        run_main(lambda: sys.exit("--held-out 0: hold out 1 to 99"))
    with pytest.raises(ZeroDivisionError):
        run_main(lambda: 1 / 0)


def test_run_main_stops_on_ctrl_c_and_sigterm_as_the_cli(capsys, monkeypatch, tmp_path) -> None:
    """Ctrl-C and SIGTERM print one line and exit 130 and 143, as ``rsgan`` does, not a
    traceback with exit status 1; an interrupted training says how to resume."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from _common import run_main

    from rsgan.training import TrainingInterrupted

    def interrupted(signum: int):  # noqa: ANN202
        def main() -> None:
            raise TrainingInterrupted(3, tmp_path, signum=signum)

        return main

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    def terminated() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # raised as an interrupt within run_main

    cases = [
        (interrupted(signal.SIGINT), 130, "after step 3"),
        (interrupted(signal.SIGTERM), 143, "after step 3"),
        (ctrl_c, 130, "Interrupted."),
        (terminated, 143, "Terminated."),
    ]
    for main, code, text in cases:
        try:
            run_main(main)
        except SystemExit as exc:
            assert exc.code == code
        except KeyboardInterrupt as exc:  # would stop pytest itself
            pytest.fail(f"run_main let {exc!r} through")
        else:
            pytest.fail("run_main did not exit")
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_default_model_training_keeps_the_bundled_model(make_raster, tmp_path, monkeypatch):
    """``train_default_model.py`` without ``--out`` saves under ``runs/`` of the current
    folder, not over the shipped asset; an existing ``--out`` (the asset included) is
    refused before training unless ``--overwrite`` is given."""
    tdm = _example("train_default_model")
    data = tmp_path / "joplin"
    utm = {"crs": "EPSG:26915", "width": 160, "height": 160}
    for name in (tdm.HOLDOUT_PRE, "tile_1361-9136.tif"):
        make_raster(name, folder=data / "pre", seed=1, **utm)
    for name in (tdm.HOLDOUT_POST, "tile_31500-5137.tif"):
        make_raster(name, folder=data / "post", seed=2, **utm)
    asset = tdm.ASSET.read_bytes()
    tiny = ["--data", str(data), "--ngf", "4", "--n-blocks", "1", "--max-steps", "0"]
    tiny += ["--threads", str(torch.get_num_threads())]  # main sets torch's threads
    monkeypatch.chdir(tmp_path)
    tdm.main(tiny)  # no step: measures the untrained generators and saves them
    saved = tmp_path / "runs" / "default_cyclegan_joplin.safetensors"
    assert load_model(saved).steps == 0 and tdm.ASSET.read_bytes() == asset
    saved.write_bytes(b"an earlier run")
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        tdm.main(tiny)
    with pytest.raises(OutputExistsError, match="is the bundled default model"):
        tdm.main([*tiny, "--out", str(tdm.ASSET)])
    assert saved.read_bytes() == b"an earlier run" and tdm.ASSET.read_bytes() == asset
    # a folder is refused up front, --overwrite or not (it failed after training)
    with pytest.raises(ConfigError, match="is a folder; pass the checkpoint file"):
        tdm.main([*tiny, "--out", str(tmp_path / "runs"), "--overwrite"])
    tdm.main([*tiny, "--overwrite"])
    assert load_model(saved).steps == 0


def test_translate_scene_defaults_to_the_held_out_tile(tmp_path, monkeypatch) -> None:
    """``translate_scene.py`` without ``--scene`` shows the bundled model on the Joplin
    pre tile it was not trained on, not the first tile by name (a training tile)."""
    pre = tmp_path / "xview2_joplin_prepost" / "pre"
    pre.mkdir(parents=True)
    for name in ("tile_1361-10160", "tile_1361-9136", "tile_337-10160", "tile_337-9136"):
        (pre / f"{name}.tif").touch()
    monkeypatch.setenv("RSGAN_SHARED_DATA", str(tmp_path))
    assert _example("translate_scene").default_scene() == pre / "tile_337-9136.tif"
