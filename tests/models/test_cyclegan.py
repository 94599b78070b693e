"""CycleGAN networks: shapes for any band count, the paper's layout, input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rsgan.errors import ConfigError, ModelError
from rsgan.models import (
    MODEL_KINDS,
    CycleGANConfig,
    PatchDiscriminator,
    ResnetGenerator,
    SceneInstanceNorm2d,
    build_nets,
    make_config,
)


@pytest.mark.parametrize("bands_a", [1, 3, 4, 13])
def test_shapes_for_band_counts(bands_a: int) -> None:
    config = CycleGANConfig(in_channels_a=bands_a, in_channels_b=4, ngf=4, ndf=4, n_blocks=2)
    nets = build_nets("cyclegan", config)
    assert set(nets) == {"G_AB", "G_BA", "D_A", "D_B"}
    a = torch.rand(2, bands_a, 32, 48) * 2 - 1
    with torch.no_grad():
        fake_b = nets["G_AB"](a)
        back = nets["G_BA"](fake_b)
        assert fake_b.shape == (2, 4, 32, 48)
        assert back.shape == a.shape
        assert fake_b.abs().max() <= 1.0
        assert nets["D_B"](fake_b).shape == (2, 1, 2, 4)
        assert nets["D_A"](a).shape == (2, 1, 2, 4)


def test_reference_parameter_counts() -> None:
    # Zhu et al.'s 9-block generator and 70x70 PatchGAN for RGB: 11.378 M and 2.765 M weights
    g = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    d = PatchDiscriminator(3, ndf=64, n_layers=3)
    assert sum(p.numel() for p in g.parameters()) == 11_378_179
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())
    kinds = [type(m) for m in g.modules()]
    assert nn.ConvTranspose2d in kinds and nn.BatchNorm2d not in kinds


def test_patch_receptive_field_is_70() -> None:
    d = PatchDiscriminator(1, ndf=2, n_layers=3).eval()
    for i, m in enumerate(d.model):  # instance norm couples all pixels; drop it here
        if isinstance(m, SceneInstanceNorm2d):
            d.model[i] = nn.Identity()
    x = torch.zeros(1, 1, 140, 140, requires_grad=True)
    out = d(x)
    out[0, 0, 5, 5].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    assert int(rows.max() - rows.min()) + 1 == 70


def test_weight_init_is_normal_002() -> None:
    torch.manual_seed(0)
    g = ResnetGenerator(3, 3, ngf=16, n_blocks=2)
    w = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert abs(float(w.std()) - 0.02) < 0.002
    assert abs(float(w.mean())) < 0.001


def test_wrong_input_raises_model_error() -> None:
    g = ResnetGenerator(4, 4, ngf=4, n_blocks=1)
    with pytest.raises(ModelError, match="expects 4 band"):
        g(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ModelError, match="multiples of 4"):
        g(torch.zeros(1, 4, 30, 32))
    with pytest.raises(ModelError, match="at least 8"):
        g(torch.zeros(1, 4, 4, 4))
    d = PatchDiscriminator(4, ndf=4)
    with pytest.raises(ModelError, match="at least 24"):
        d(torch.zeros(1, 4, 16, 16))
    assert ResnetGenerator.size_multiple == 4 and ResnetGenerator.min_size == 8


def test_config_round_trip_and_validation() -> None:
    config = CycleGANConfig(in_channels_a=4, in_channels_b=13, ngf=8, n_blocks=6)
    assert CycleGANConfig.from_dict(config.to_dict()) == config
    assert make_config("cyclegan", config.to_dict()) == config
    assert not config.uses_identity and CycleGANConfig().uses_identity
    with pytest.raises(ConfigError, match="ngf"):
        CycleGANConfig(ngf=0)
    with pytest.raises(ConfigError, match="no field"):
        CycleGANConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="unknown model kind"):
        build_nets("stylegan")
    assert set(MODEL_KINDS) == {"cyclegan", "dcgan"}


def test_reflection_pad_keeps_bf16_under_cpu_autocast() -> None:
    # torch's CPU autocast runs reflection_pad2d in float32: a bf16 activation came out
    # float32 (twice the bytes), and the next convolution cast it back
    from rsgan.models._common import ReflectionPad2d

    x = torch.randn(1, 8, 12, 10).bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = nn.ReflectionPad2d(2)(x)
        ours = ReflectionPad2d(2)(x)
        fp32_in = ReflectionPad2d(2)(x.float())
    assert theirs.dtype == torch.float32  # why the class exists: fails if torch changes
    assert ours.dtype == torch.bfloat16
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ours.float(), theirs)  # padding copies values: the same numbers
    assert fp32_in.dtype == torch.float32  # float32 input: torch's module, unchanged
    assert torch.equal(fp32_in, theirs)
    with torch.no_grad():  # outside autocast: torch's module
        assert torch.equal(ReflectionPad2d(2)(x), nn.ReflectionPad2d(2)(x))


def test_generator_output_is_unchanged_by_the_bf16_pad() -> None:
    torch.manual_seed(0)
    ours = ResnetGenerator(3, 3, ngf=8, n_blocks=2).eval()
    theirs = ResnetGenerator(3, 3, ngf=8, n_blocks=2).eval()
    theirs.load_state_dict(ours.state_dict())
    pads = [name for name, m in theirs.named_modules() if isinstance(m, nn.ReflectionPad2d)]
    assert len(pads) == 2 + 2 * 2
    for name in pads:  # back to torch's own module
        parent, _, child = name.rpartition(".")
        setattr(
            theirs.get_submodule(parent),
            child,
            nn.ReflectionPad2d(ours.get_submodule(name).padding),
        )
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = ours(x), theirs(x)
    assert a.dtype == torch.bfloat16
    assert torch.equal(a, b)  # the same bf16 values reach every convolution


@pytest.mark.parametrize("out_channels", [1, 3, 4])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_narrow_conv_by_phases_equals_torch_conv(out_channels: int, precision: str) -> None:
    from rsgan.models._common import NarrowConv2d

    torch.manual_seed(out_channels)
    ours = NarrowConv2d(5, out_channels, 7)
    theirs = nn.Conv2d(5, out_channels, 7)
    theirs.load_state_dict(ours.state_dict())  # the same weights and keys
    x = torch.randn(2, 5, 30, 42).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        assert ours.phased(x)
        a, b = ours(x), theirs(x)
    assert a.shape == b.shape == (2, out_channels, 24, 36)
    assert a.dtype == b.dtype
    # the same sums in another order: float rounding (bf16: its output's resolution)
    tol = 1e-5 if precision == "fp32" else 2e-2
    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol)
    assert a.is_contiguous(memory_format=torch.channels_last)


def test_narrow_conv_keeps_torch_forward_where_phases_do_not_apply() -> None:
    from rsgan.models._common import NarrowConv2d

    x = torch.randn(1, 4, 20, 20)
    with torch.no_grad():
        narrow = NarrowConv2d(4, 3, 7)
        assert not narrow.phased(x[..., :19])  # 13 output cols: odd
        torch.testing.assert_close(
            narrow(x[..., :19]), F.conv2d(x[..., :19], narrow.weight, narrow.bias)
        )
        assert not NarrowConv2d(4, 3, 6).phased(x)  # 15 x 15 output
        assert not NarrowConv2d(4, 5, 7).phased(x)  # 5 x 4 channels: no longer narrow
        assert not NarrowConv2d(4, 3, 7, padding=3).phased(x)
        assert not NarrowConv2d(4, 3, 7, stride=2).phased(x)
        assert NarrowConv2d(4, 3, 7).phased(x)
    assert not NarrowConv2d(4, 3, 7).phased(x)  # gradients on: training keeps torch's


def test_generator_uses_the_narrow_conv_last() -> None:
    from rsgan.models._common import NarrowConv2d

    g = ResnetGenerator(3, 3, ngf=8, n_blocks=1).eval()
    last = [m for m in g.modules() if isinstance(m, nn.Conv2d)][-1]
    assert isinstance(last, NarrowConv2d)
    assert f"model.{len(g.model) - 2}.weight" in g.state_dict()  # checkpoint keys kept


def _first_upsampling(g: ResnetGenerator) -> nn.Sequential:
    """The layers of ``g``'s first upsampling step, up to its norm layer."""
    layers = list(g.model)
    start = next(
        i for i, m in enumerate(layers) if isinstance(m, (nn.ConvTranspose2d, nn.Upsample))
    )
    stop = next(i for i in range(start, len(layers)) if isinstance(layers[i], SceneInstanceNorm2d))
    return nn.Sequential(*layers[start:stop])


def test_resize_upsampling_has_no_checkerboard() -> None:
    """A flat feature map stays flat through nearest 2x + 3x3 conv (every output pixel sees
    the same kernel), while a stride-2 transposed 3x3 conv stamps a period-2 pattern on it
    (Odena et al. 2016): the texture the bundled deconv model shows on flat roofs."""
    torch.manual_seed(0)
    flat = torch.ones(1, 16, 12, 12)
    for upsample, patterned in (("deconv", True), ("resize", False)):
        g = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample=upsample).eval()
        with torch.no_grad():
            out = _first_upsampling(g)(flat)
        assert out.shape == (1, 8, 24, 24)
        inner = out[..., 2:-2, 2:-2]  # away from the borders' padding
        spread = float((inner - inner.mean(dim=(-2, -1), keepdim=True)).abs().max())
        assert (spread > 1e-3) == patterned, (upsample, spread)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in g.modules())


def test_blur_after_the_transposed_conv_removes_its_checkerboard() -> None:
    """The "blur" generator's first upsampling step (transposed conv, norm, ReLU, binomial
    low-pass) maps a flat feature map to a flat one, although the transposed conv alone
    stamps its period-2 pattern on it (the deconv test above)."""
    from rsgan.models._common import BinomialBlur2d

    torch.manual_seed(0)
    flat = torch.ones(1, 16, 12, 12)
    g = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample="blur").eval()
    layers = list(g.model)
    start = next(i for i, m in enumerate(layers) if isinstance(m, nn.ConvTranspose2d))
    stop = next(i for i in range(start, len(layers)) if isinstance(layers[i], BinomialBlur2d))
    with torch.no_grad():
        before = nn.Sequential(*layers[start:stop])(flat)  # norm and ReLU, not the blur
        out = layers[stop](before)
    assert out.shape == before.shape == (1, 8, 24, 24)

    def spread(t: torch.Tensor) -> float:
        inner = t[..., 2:-2, 2:-2]  # away from the borders' padding
        return float((inner - inner.mean(dim=(-2, -1), keepdim=True)).abs().max())

    assert spread(before) > 0.1
    assert spread(out) < 1e-5
    # two low-passes (one per upsampling), the deconv model's layers otherwise
    deconv = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample="deconv")
    blurs = [m for m in g.modules() if isinstance(m, BinomialBlur2d)]
    assert [b.channels for b in blurs] == [8, 4]
    assert not [k for k in g.state_dict() if "kernel" in k]  # fixed: not in checkpoints
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in deconv.parameters())


def test_blur_generator_output_has_no_grid_pattern() -> None:
    """Whole generators at their initial weights on a smooth input: the deconv one's
    output repeats a 4 px pattern (its two stride-2 upsamplings) tens of DN strong, the
    "blur" one's differs between the phases of the 4 px grid by what the input's slope
    gives (about 1 DN here)."""
    from rsgan.metrics import checkerboard_score

    y, x = torch.meshgrid(
        torch.linspace(-0.5, 0.5, 64), torch.linspace(-0.3, 0.6, 64), indexing="ij"
    )
    smooth = torch.stack([x, y, x * y])[None]
    for seed in range(3):
        scores = {}
        for upsample in ("deconv", "blur"):
            torch.manual_seed(seed)
            g = ResnetGenerator(3, 3, ngf=8, n_blocks=2, upsample=upsample).eval()
            with torch.no_grad():
                out = g(smooth)[0].numpy() * 127.5  # DN of a uint8 band
            scores[upsample] = checkerboard_score(out[:, 8:-8, 8:-8])
        assert scores["deconv"] > 20, scores
        assert scores["blur"] < 2.5, scores


@pytest.mark.parametrize("upsample", ["resize", "blur"])
def test_upsample_mode_is_checked_and_kept_in_checkpoints(tmp_path, upsample) -> None:
    from rsgan.checkpoint import DomainInfo, load_model, save_checkpoint
    from rsgan.io import Normalizer

    with pytest.raises(ConfigError, match="'bilinear'"):
        CycleGANConfig(upsample="bilinear")
    with pytest.raises(ConfigError, match="'pixelshuffle'"):
        ResnetGenerator(3, 3, upsample="pixelshuffle")
    config = CycleGANConfig(ngf=4, ndf=4, n_blocks=1, upsample=upsample)
    nets = build_nets("cyclegan", config)
    rgb = DomainInfo(
        bands=None, count=3, dtype="uint8", normalizer=Normalizer.for_dtype("uint8", 3)
    )
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        kind="cyclegan",
        config=config,
        nets=nets,
        domains={"a": rgb, "b": rgb},
    )
    loaded = load_model(path)
    assert loaded.config.upsample == upsample
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    g = loaded.generator("a2b").eval()
    with torch.no_grad():
        torch.testing.assert_close(g(x), nets["G_AB"].eval()(x))
    # a checkpoint written before the option existed loads as the paper's deconv
    old = {k: v for k, v in config.to_dict().items() if k != "upsample"}
    assert make_config("cyclegan", old).upsample == "deconv"


def test_lambda_periodic_is_checked_and_defaults_to_off() -> None:
    with pytest.raises(ConfigError, match="lambda_periodic=-1"):
        CycleGANConfig(lambda_periodic=-1)
    config = CycleGANConfig(lambda_periodic=10)
    assert make_config("cyclegan", config.to_dict()).lambda_periodic == 10
    # a checkpoint written before the option existed trains as the paper
    old = {k: v for k, v in config.to_dict().items() if k != "lambda_periodic"}
    assert make_config("cyclegan", old).lambda_periodic == 0


def test_generator_with_per_tile_statistics_runs_channels_last_as_channels_first() -> None:
    # per-tile instance norm keeps channels-last activations channels-last (torch's
    # instance_norm turned them channels-first): same outputs, every layer's output
    # in the input's layout
    torch.manual_seed(3)
    net = ResnetGenerator(3, 3, ngf=8, n_blocks=2).eval()
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    layouts: list[bool] = []
    hooks = [
        m.register_forward_hook(
            lambda m, i, o: layouts.append(o.is_contiguous(memory_format=torch.channels_last))
        )
        for m in net.modules()
        if isinstance(m, SceneInstanceNorm2d)
    ]
    with torch.no_grad():
        first = net(x)
        layouts.clear()
        last = net(x.contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    assert layouts and all(layouts)
    torch.testing.assert_close(last, first, atol=1e-5, rtol=1e-5)
