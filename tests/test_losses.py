"""Losses and the fake pool."""

from __future__ import annotations

import pytest
import torch

from rsgan.errors import ConfigError
from rsgan.losses import (
    ImagePool,
    bce_loss,
    gan_loss,
    lsgan_loss,
    masked_l1,
    patch_weights,
    periodic_peaks,
    spectral_peaks,
)


def test_lsgan_targets_and_weights() -> None:
    pred = torch.tensor([[[[1.0, 0.0], [0.5, 2.0]]]])
    assert float(lsgan_loss(pred, True)) == pytest.approx((0 + 1 + 0.25 + 1) / 4)
    assert float(lsgan_loss(pred, False)) == pytest.approx((1 + 0 + 0.25 + 4) / 4)
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(lsgan_loss(pred, True, weight)) == 0.0
    assert float(lsgan_loss(pred, True, torch.zeros_like(weight))) == 0.0


def test_bce_on_logits() -> None:
    logits = torch.tensor([0.0, 3.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2))
    torch.testing.assert_close(bce_loss(logits, True), expected)
    assert gan_loss("bce") is bce_loss and gan_loss("lsgan") is lsgan_loss
    with pytest.raises(ConfigError, match="wgan"):
        gan_loss("wgan")


def test_masked_l1_ignores_invalid_pixels() -> None:
    x = torch.zeros(2, 3, 4, 4)
    y = torch.ones(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    y2 = y.clone()
    y2[~mask.expand_as(y)] = 100.0
    assert float(masked_l1(x, y, mask)) == pytest.approx(1.0)
    assert float(masked_l1(x, y2, mask)) == pytest.approx(1.0)
    assert float(masked_l1(x, y2)) > 1.0
    assert float(masked_l1(x, y, mask[:, 0])) == pytest.approx(1.0)
    assert float(masked_l1(x, y, torch.zeros_like(mask))) == 0.0


def test_patch_weights_threshold() -> None:
    mask = torch.ones(1, 1, 32, 32)
    mask[..., :, :12] = 0  # left 12 of 32 columns invalid
    pred = torch.zeros(1, 1, 4, 4)  # cells of 8 px: fractions 0, 0.5, 1, 1
    w = patch_weights(mask, pred)
    assert w.shape == pred.shape
    assert w[0, 0, 0].tolist() == [0.0, 1.0, 1.0, 1.0]
    assert patch_weights(None, pred) is None


def test_image_pool_is_seeded_and_restorable() -> None:
    def run(pool: ImagePool, start: int, n: int) -> list[float]:
        out = []
        for i in range(start, start + n):
            images = torch.full((2, 1, 2, 2), float(i))
            got, masks = pool.query(images, torch.ones(2, 1, 2, 2))
            assert got.shape == images.shape and masks.shape == images.shape
            out += got[:, 0, 0, 0].tolist()
        return out

    a = ImagePool(3, seed=5)
    first = run(a, 0, 4)
    assert first[:3] == [0.0, 0.0, 1.0]  # the first images fill the pool and pass through
    state = a.state_dict()
    rest = run(a, 4, 10)
    b = ImagePool(3, seed=99)
    b.load_state_dict(state)
    assert run(b, 4, 10) == rest
    assert any(v < i // 2 for i, v in enumerate(rest, start=8))  # old fakes come back
    c = ImagePool(3, seed=5)
    assert run(c, 0, 14) == first + rest
    assert run(ImagePool(0), 0, 2) == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ConfigError):
        ImagePool(-1)


def _pattern(period: int, seed: int = 0) -> torch.Tensor:
    """A zero-mean ``period`` x ``period`` pattern."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(period, period, generator=g)
    return p - p.mean()


def _smooth(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random fields in [-1, 1] with a little noise: no grid pattern."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic")
    return (x * 2 - 1 + 0.02 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)


def test_spectral_peaks_find_a_grid_pattern_whatever_its_sign() -> None:
    x = _smooth(2, 128, seed=0)
    pattern = 0.2 * _pattern(4)
    assert spectral_peaks(x, 4).shape == (2, 3, 15)
    assert float(spectral_peaks(x, 4).abs().mean()) < 0.5
    assert float(spectral_peaks(x + pattern.repeat(32, 32), 4).mean()) > 1.5
    # dots light on one half and dark on the other: the same power
    flipped = x.clone()
    flipped[..., :64] += pattern.repeat(32, 16)
    flipped[..., 64:] -= pattern.repeat(32, 16)
    assert float(periodic_peaks(flipped, x, 4)) > 1.5
    assert float(periodic_peaks(x, x, 4)) == 0.0
    # colour and contrast changes move the bins and their neighbours alike
    shifted = x * torch.tensor([0.7, 1.2, 0.9]).view(1, 3, 1, 1) + 0.2
    assert float(periodic_peaks(shifted, x, 4)) < 0.01
    # one output band against three input bands
    assert float(periodic_peaks(x.mean(1, keepdim=True), x, 4)) < 0.3
    with pytest.raises(ConfigError, match="window must be a multiple of period=4"):
        spectral_peaks(x, 4, window=30)
    with pytest.raises(ConfigError, match="too small"):
        spectral_peaks(x[..., :4, :4], 4)


def test_periodic_peaks_gradient_removes_a_stamped_pattern() -> None:
    source = _smooth(4, 64, seed=1)
    stamp = (0.2 * _pattern(4)).repeat(3, 1, 1).requires_grad_()
    opt = torch.optim.Adam([stamp], lr=2e-3)
    before = float(periodic_peaks(source + stamp.detach().repeat(1, 16, 16), source, 4))
    for _ in range(300):
        opt.zero_grad()
        periodic_peaks(source + stamp.repeat(1, 16, 16), source, 4).backward()
        opt.step()
    after = float(periodic_peaks(source + stamp.detach().repeat(1, 16, 16), source, 4))
    assert before > 1.5
    assert after < 0.1 * before, (before, after)
    assert float(stamp.detach().abs().max()) < 0.2 * 0.2


def test_periodic_peaks_count_only_whole_valid_squares() -> None:
    source = _smooth(2, 64, seed=2)
    mask = torch.ones(2, 64, 64, dtype=torch.bool)
    mask[:, :32] = False  # the top squares hold nodata
    fake = source.clone()
    fake[:, :, :32] += (0.2 * _pattern(4)).repeat(8, 16)  # dots only there
    assert float(periodic_peaks(fake, source, 4)) > 1.0
    assert float(periodic_peaks(fake, source, 4, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(periodic_peaks(fake, source, 4, mask[:, None])) == pytest.approx(0.0, abs=1e-6)
    # an image with no whole valid square counts for nothing
    none = torch.zeros_like(mask)
    assert float(spectral_peaks(fake, 4, none).abs().max()) == 0.0
