"""DCGAN networks: sizes, band counts, the paper's layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsgan.errors import ConfigError, ModelError
from rsgan.models import DCGANConfig, DCGANDiscriminator, DCGANGenerator, build_nets


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("bands", [1, 3, 4, 13])
def test_shapes(size: int, bands: int) -> None:
    config = DCGANConfig(channels=bands, image_size=size, nz=8, ngf=2, ndf=2)
    nets = build_nets("dcgan", config)
    with torch.no_grad():
        images = nets["G"](nets["G"].latent(2))
        assert images.shape == (2, bands, size, size)
        assert images.abs().max() <= 1.0
        assert nets["D"](images).shape == (2,)


@pytest.mark.parametrize("size,n_up", [(64, 5), (128, 6), (256, 7)])
def test_layers_follow_from_size(size: int, n_up: int) -> None:
    config = DCGANConfig(image_size=size, ngf=4, ndf=4)
    g, d = DCGANGenerator(config), DCGANDiscriminator(config)
    g_convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(g_convs) == n_up and len(d_convs) == n_up
    assert g_convs[0].out_channels == 4 * 8  # widths capped at 8x
    # no pooling, no fully connected layers; BN everywhere but D's first layer and outputs
    for net in (g, d):
        kinds = {type(m) for m in net.modules()}
        assert not kinds & {nn.Linear, nn.MaxPool2d, nn.AvgPool2d}
    bn_d = sum(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    bn_g = sum(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert bn_d == n_up - 2 and bn_g == n_up - 1
    assert isinstance(d.model[1], nn.LeakyReLU)


def test_config_validation_and_input_checks() -> None:
    with pytest.raises(ConfigError, match="image_size 96"):
        DCGANConfig(image_size=96)
    with pytest.raises(ConfigError, match="nz"):
        DCGANConfig(nz=0)
    config = DCGANConfig(channels=4, ngf=2, ndf=2)
    assert DCGANConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ModelError, match="latents"):
        DCGANGenerator(config)(torch.zeros(1, 7))
    with pytest.raises(ModelError, match="64 px with 4 band"):
        DCGANDiscriminator(config)(torch.zeros(1, 3, 64, 64))
