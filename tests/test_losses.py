"""Losses and the fake pool."""

from __future__ import annotations

import pytest
import torch

from rsgan.errors import ConfigError
from rsgan.losses import ImagePool, bce_loss, gan_loss, lsgan_loss, masked_l1, patch_weights


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
