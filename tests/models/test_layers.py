"""SceneInstanceNorm2d: masks, pooled and fixed modes, autocast, pass-through."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsgan.errors import ConfigError, ModelError
from rsgan.models import (
    BlockProxy,
    ResnetGenerator,
    SceneInstanceNorm2d,
    block_moments,
    collect_norm_stats,
    fixed_norm_stats,
    norm_layers,
    norm_mask,
    pooled_forward,
    set_norm_mode,
)
from rsgan.models import layers as layers_mod


def _gen(seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)
    return ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()


def test_instance_mode_matches_torch_instance_norm() -> None:
    x = torch.randn(3, 5, 16, 12)
    ours = SceneInstanceNorm2d(5)(x)
    ref = nn.InstanceNorm2d(5)(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_mode_keeps_channels_last_and_matches_torch(batch: int, dtype) -> None:
    # torch's instance_norm returns a channels-last input channels-first (and slowly): in
    # inference the layer keeps the layout and dtype, with the same values
    x = torch.randn(batch, 6, 20, 14) * 3 + torch.arange(6.0).view(1, 6, 1, 1)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ours = SceneInstanceNorm2d(6)(x)
    assert ours.dtype == dtype
    assert ours.is_contiguous(memory_format=torch.channels_last)
    ref = nn.InstanceNorm2d(6)(x.float().contiguous())
    tol = 1e-5 if dtype == torch.float32 else 1.6e-2  # bf16: the output's own rounding
    torch.testing.assert_close(ours.float(), ref, atol=tol, rtol=0)
    # with autograd too (training-mode batch norm per sample), gradients included
    xg = x.detach().requires_grad_()
    trained = SceneInstanceNorm2d(6)(xg)
    assert trained.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(trained.float(), ref, atol=2 * tol, rtol=0)  # bf16: 2 ulp
    ref_x = x.detach().float().contiguous().requires_grad_()
    grad = torch.randn(ref.shape)
    (trained.float() * grad).sum().backward()
    (nn.InstanceNorm2d(6)(ref_x) * grad).sum().backward()
    assert xg.grad is not None
    torch.testing.assert_close(xg.grad.float(), ref_x.grad, atol=4 * tol, rtol=0)


def test_invalid_pixels_do_not_change_statistics_or_valid_outputs() -> None:
    layer = SceneInstanceNorm2d(2)
    x = torch.randn(2, 2, 8, 8)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    mask[0, :, :3] = False
    mask[1, :, :, 5:] = False
    y = x.clone()
    y[~mask.expand_as(y)] = 1e3  # garbage in the invalid pixels
    with norm_mask(layer, mask):
        out_x, out_y = layer(x), layer(y)
    valid = mask.expand_as(x)
    torch.testing.assert_close(out_x[valid], out_y[valid])
    # and the statistics are those of the valid pixels alone
    vals = x[0, 0][mask[0, 0]]
    expected = (vals - vals.mean()) / torch.sqrt(vals.var(unbiased=False) + 1e-5)
    torch.testing.assert_close(out_x[0, 0][mask[0, 0]], expected, atol=1e-5, rtol=1e-5)
    # without the mask the garbage does change the result
    assert not torch.allclose(layer(x)[valid], layer(y)[valid])


def test_all_invalid_sample_falls_back_without_nan() -> None:
    layer = SceneInstanceNorm2d(3)
    x = torch.randn(2, 3, 8, 8)
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    mask[1] = False
    with norm_mask(layer, mask):
        out = layer(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], nn.InstanceNorm2d(3)(x)[1], atol=1e-5, rtol=1e-5)


def test_mask_is_area_resized_inside_a_generator() -> None:
    g = _gen()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.ones(2, 1, 32, 32)
    mask[:, :, :, :16] = 0
    seen = {}

    def hook(module, inputs, output):  # noqa: ANN001
        seen[module] = module._weight(inputs[0].float(), module.mask)

    handles = [m.register_forward_hook(hook) for m in norm_layers(g).values()]
    with torch.no_grad():
        g(x, mask=mask)
    for h in handles:
        h.remove()
    sizes = {tuple(w.shape[-2:]) for w in seen.values()}
    assert sizes == {(32, 32), (16, 16), (8, 8)}
    for w in seen.values():  # left half invalid at every resolution
        assert float(w[..., : w.shape[-1] // 2].max()) == 0.0
        assert float(w[..., w.shape[-1] // 2 :].min()) == 1.0
    assert all(layer.mask is None for layer in norm_layers(g).values())


def test_pooled_statistics_treat_the_batch_as_one_image() -> None:
    layer = SceneInstanceNorm2d(2)
    layer.mode = "pooled"
    x = torch.randn(4, 2, 6, 6) * 3 + 1
    out = layer(x)
    flat = x.permute(1, 0, 2, 3).reshape(2, -1)
    torch.testing.assert_close(layer.mean, flat.mean(1))
    torch.testing.assert_close(layer.var, flat.var(1, unbiased=False))
    # one image made of the four tiles side by side gets the same normalisation
    torch.testing.assert_close(
        out.permute(1, 0, 2, 3).reshape(2, -1).mean(1), torch.zeros(2), atol=1e-5, rtol=0
    )


def test_fixed_equals_pooled_and_restores_mode() -> None:
    g = _gen()
    x = torch.randn(3, 3, 32, 32)
    mask = torch.rand(3, 1, 32, 32) > 0.2
    stats = collect_norm_stats(g, x, mask)
    assert set(stats) == set(norm_layers(g)) and len(stats) == 7  # 3 + 2 per block + 2
    set_norm_mode(g, "pooled")
    with torch.no_grad(), norm_mask(g, mask):
        pooled = g(x)
    set_norm_mode(g, "instance")
    with torch.no_grad(), fixed_norm_stats(g, stats), norm_mask(g, mask):
        fixed = g(x)
        # per tile, fixed statistics give the same output as the whole batch did
        tile = g(x[1:2], mask=mask[1:2])
    torch.testing.assert_close(fixed, pooled)
    torch.testing.assert_close(tile, pooled[1:2], atol=1e-5, rtol=1e-4)
    assert {layer.mode for layer in norm_layers(g).values()} == {"instance"}
    with torch.no_grad():
        instance = g(x[1:2])
    assert not torch.allclose(instance, pooled[1:2], atol=1e-3)


def test_fixed_mode_needs_statistics() -> None:
    g = _gen()
    set_norm_mode(g, "fixed")
    with pytest.raises(ModelError, match="collect_norm_stats"):
        g(torch.randn(1, 3, 16, 16))
    with pytest.raises(ModelError, match="lack"):
        with fixed_norm_stats(g, {}):
            pass
    with pytest.raises(ConfigError, match="norm mode"):
        set_norm_mode(g, "batch")


def test_models_without_norm_layers_pass_through() -> None:
    conv = nn.Conv2d(3, 3, 1)
    x = torch.randn(2, 3, 8, 8)
    before = conv(x)
    assert collect_norm_stats(conv, x) == {}
    assert set_norm_mode(conv, "pooled") == {}
    with fixed_norm_stats(conv, {}), norm_mask(conv, torch.zeros(2, 1, 8, 8)):
        torch.testing.assert_close(conv(x), before)
    ident = nn.Identity()
    with fixed_norm_stats(ident, {}):
        assert ident(x) is x


def test_bf16_autocast_statistics_in_fp32() -> None:
    g = _gen()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = g(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = g(x)
            stats = collect_norm_stats(g, x)
    assert out.dtype == torch.bfloat16
    assert all(m.dtype == torch.float32 and v.dtype == torch.float32 for m, v in stats.values())
    assert torch.isfinite(out.float()).all()
    assert float((out.float() - ref).abs().mean()) < 0.05


class _Opaque(nn.Module):
    """A generator whose forward the layer-by-layer runner cannot see into (it is not a
    plain chain): pooled passes over it run one sample per thread instead."""

    def __init__(self) -> None:
        super().__init__()
        self.g = _gen(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x) * 1.0


def _reference_pooled(g: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> tuple:
    """A batched pooled forward with a dense weight map (the plain, slow path)."""
    set_norm_mode(g, "pooled")
    try:
        with torch.no_grad(), norm_mask(g, weight):
            out = g(x)
    finally:
        set_norm_mode(g, "instance")
    return out, {n: (m.mean.clone(), m.var.clone()) for n, m in norm_layers(g).items()}


@pytest.mark.parametrize(
    "kind", ["layer-major", "layer-major-resize", "layer-major-blur", "threads"]
)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_pooled_forward_equals_a_batched_pass_over_the_boxes(kind, masked, layout) -> None:
    torch.manual_seed(1)
    if kind in ("layer-major-resize", "layer-major-blur"):  # other upsampling layers
        torch.manual_seed(3)
        g = ResnetGenerator(3, 3, ngf=4, n_blocks=1, upsample=kind.split("-")[-1]).eval()
    else:
        g = _gen(3) if kind == "layer-major" else _Opaque()
    x = torch.randn(3, 3, 32, 32)
    if layout == "channels_last":  # as translate_raster feeds rsgan's generators
        x = x.contiguous(memory_format=torch.channels_last)
    boxes = [(0, 0, 24, 28), (4, 8, 32, 32), (8, 0, 20, 16)]
    weights = [1.0, 2.5, 0.5]
    mask = torch.ones(3, 1, 32, 32)
    if masked:
        mask[1, :, :10] = 0
    dense = torch.zeros(3, 1, 32, 32)
    for i, (top, left, bottom, right) in enumerate(boxes):
        dense[i, :, top:bottom, left:right] = weights[i]
    ref_out, ref_stats = _reference_pooled(g, x, dense * mask)
    out, stats = pooled_forward(g, x, mask if masked else None, boxes=boxes, weights=weights)
    torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
    assert stats.keys() == ref_stats.keys()
    for name, (mean, var) in stats.items():
        torch.testing.assert_close(mean, ref_stats[name][0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(var, ref_stats[name][1], atol=1e-4, rtol=1e-4)
    # the outputs are those of the statistics fixed, and the modes are restored
    with torch.no_grad(), fixed_norm_stats(g, stats):
        torch.testing.assert_close(g(x), out, atol=1e-4, rtol=1e-4)
    assert {layer.mode for layer in norm_layers(g).values()} == {"instance"}
    assert all(layer.lockstep is None for layer in norm_layers(g).values())


def test_pooled_forward_threads_re_raise_a_failure() -> None:
    g = _Opaque()
    with pytest.raises(ModelError, match="expects 3 band"):
        pooled_forward(g, torch.randn(2, 4, 32, 32))
    assert all(layer.lockstep is None for layer in norm_layers(g).values())
    assert {layer.mode for layer in norm_layers(g).values()} == {"instance"}


def test_pooled_forward_bf16_statistics_match_fp32() -> None:
    g = _gen()
    x = torch.randn(2, 3, 64, 64)
    _, ref = pooled_forward(g, x)
    out, stats = pooled_forward(g, x, context=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    for name, (mean, var) in stats.items():
        assert mean.dtype == torch.float32
        torch.testing.assert_close(var.sqrt(), ref[name][1].sqrt(), rtol=0.05, atol=0.02)


def _sums64(x: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    flat = x.double().reshape(x.shape[0], -1)
    return float(flat.shape[1]), flat.sum(1), flat.square().sum(1)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_box_sums_count_each_box_once_in_any_layout(layout, dtype) -> None:
    """Box sums (the rows of the box summed whole, the side columns taken off, or the
    whole sample less its frame) equal float64 sums over the box; a far-off mean does not
    cancel them away; whole-sample sums come only from samples whose box holds nothing."""
    from rsgan.models.layers import _box_sums

    torch.manual_seed(4)
    x = (torch.randn(3, 5, 40, 36) * 0.1 + 30.0).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    boxes = [(4, 3, 33, 30), (0, 0, 40, 36), (10, 10, 10, 20)]  # the last one is empty
    weights = [2.0, 0.5, 1.0]
    boxed, whole = _box_sums(x, boxes, weights)
    want = [0.0, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]
    for i, (top, left, bottom, right) in enumerate(boxes[:2]):
        count, sums, squares = _sums64(x[i, :, top:bottom, left:right])
        want = [want[0] + weights[i] * count, want[1] + weights[i] * sums,
                want[2] + weights[i] * squares]  # fmt: skip
    assert boxed[0] == pytest.approx(want[0])
    torch.testing.assert_close(boxed[1], want[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(boxed[2], want[2], rtol=1e-5, atol=1e-6)
    # the variance survives a mean 300x the spread
    var = boxed[2] / boxed[0] - (boxed[1] / boxed[0]) ** 2
    ref = want[2] / want[0] - (want[1] / want[0]) ** 2
    torch.testing.assert_close(var, ref, rtol=0.02, atol=1e-6)
    count, sums, squares = _sums64(x[2])
    assert whole[0] == count
    torch.testing.assert_close(whole[1], sums, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole[2], squares, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("valid", [1.0, 0.9, 0.5, 0.1, 0.0])
def test_masked_box_sums_weigh_each_cell_by_its_mask(layout, dtype, valid, monkeypatch) -> None:
    """Masked box sums (the box less its not wholly valid cells, or the valid cells
    gathered, whichever is smaller) equal float64 sums of every cell of the box times its
    mask value, area-fractions included; a mean far off the spread does not cancel them;
    samples whose box holds no valid cell give the fallback sums."""
    from rsgan.models import layers
    from rsgan.models.layers import _masked_box_sums

    monkeypatch.setattr(layers, "CELL_CHUNK", 97)  # cells summed in several chunks
    torch.manual_seed(5)
    x = (torch.randn(4, 5, 40, 36) * 0.1 + 30.0).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(int(valid * 10))
    mask = (torch.rand(4, 1, 40, 36, generator=g) < valid).float()
    # a band of fractional weights, as area-resizing a mask gives at its edges
    mask[:, :, 20:23] = torch.tensor([0.25, 0.5, 0.75]).view(3, 1)
    mask[3] = 0.0  # no valid cell in this sample at all
    boxes = [(4, 3, 33, 30), (0, 0, 40, 36), (10, 10, 10, 20), (0, 0, 40, 36)]
    weights = [2.0, 0.5, 1.0, 1.0]
    boxed, whole = _masked_box_sums(x, mask, boxes, weights)
    want = [0.0, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]
    fallback = [0.0, torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)]
    for i, (top, left, bottom, right) in enumerate(boxes):
        m = mask[i, 0, top:bottom, left:right].double()
        v = x[i, :, top:bottom, left:right].double()
        if m.sum() == 0:  # the empty box and the sample without valid cells
            count, sums, squares = _sums64(x[i])
            fallback = [fallback[0] + count, fallback[1] + sums, fallback[2] + squares]
            continue
        want = [want[0] + weights[i] * float(m.sum()),
                want[1] + weights[i] * (v * m).sum((1, 2)),
                want[2] + weights[i] * (v.square() * m).sum((1, 2))]  # fmt: skip
    assert boxed[0] == pytest.approx(want[0])
    assert whole[0] == pytest.approx(fallback[0])
    torch.testing.assert_close(whole[1], fallback[1], rtol=1e-5, atol=1e-6)
    if want[0] == 0:
        return
    torch.testing.assert_close(boxed[1], want[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(boxed[2], want[2], rtol=1e-5, atol=1e-6)
    var = boxed[2] / boxed[0] - (boxed[1] / boxed[0]) ** 2
    ref = want[2] / want[0] - (want[1] / want[0]) ** 2
    torch.testing.assert_close(var, ref, rtol=0.02, atol=1e-6)


def _scene_stats_of(net: nn.Module) -> dict:
    torch.manual_seed(1)
    scene = torch.rand(1, 3, 48, 64) * 2 - 1
    with torch.no_grad():
        return collect_norm_stats(net, scene)


@pytest.mark.parametrize("upsample", ["deconv", "resize", "blur"])
def test_folded_statistics_equal_the_fixed_forward_in_fp32(upsample) -> None:
    from rsgan.models.layers import fold_norm_stats

    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=8, n_blocks=2, upsample=upsample).eval()
    stats = _scene_stats_of(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_norm_stats(net, stats)
    assert folded is not None
    assert norm_layers(folded) == {}  # every norm layer became part of its convolution
    assert len(norm_layers(net)) == 5 + 2 * 2  # the model itself is unchanged
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = (torch.rand(2, 3, 40, 56) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with fixed_norm_stats(net, stats):
            expected = net(x)
        got = folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # the convolutions before norm layers have new weights; the last one is shared
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    last_folded = [m for m in folded.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last_folded.weight is last.weight
    first, first_folded = net.model[1], folded.model[1]
    assert not torch.equal(first_folded.weight, first.weight)


def test_fold_norm_stats_refuses_what_it_cannot_fold() -> None:
    from rsgan.models.layers import fold_norm_stats

    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=1).eval()
    stats = _scene_stats_of(net)
    handle = net.model[2].register_forward_hook(lambda m, a, o: None)
    assert fold_norm_stats(net, stats) is None  # a hook on a norm layer would go unseen
    handle.remove()
    assert fold_norm_stats(net, stats) is not None
    missing = {k: v for k, v in stats.items() if k != "model.2"}
    assert fold_norm_stats(net, missing) is None
    after_relu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), SceneInstanceNorm2d(4))
    assert fold_norm_stats(after_relu, _scene_stats_of(after_relu)) is None
    no_bias = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), SceneInstanceNorm2d(4))
    assert fold_norm_stats(no_bias, _scene_stats_of(no_bias)) is None
    assert fold_norm_stats(nn.Sequential(nn.Conv2d(3, 4, 3)), {}) is None  # nothing to fold


# --------------------------------------------------------------- proxy-corrected pooling


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_block_moments_are_the_masked_moments_within_each_box(layout) -> None:
    """Each norm layer's input, weighed by the layer's resized mask, summed within each
    box scaled to the layer's grid: against direct sums over the captured inputs."""
    g = _gen(3)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 48, 64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    mask = torch.ones(1, 1, 48, 64)
    mask[..., :10, :20] = 0
    boxes = [(0, 0, 24, 32), (0, 32, 24, 64), (24, 0, 48, 40), (24, 40, 48, 64)]
    moments = block_moments(g, x, boxes, mask)
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        layer.register_forward_pre_hook(lambda m, a, name=name: inputs.setdefault(name, a[0]))
        for name, layer in norm_layers(g).items()
    ]
    with norm_mask(g, mask), torch.no_grad():
        set_norm_mode(g, "pooled")
        g(x)
    for handle in handles:
        handle.remove()
    assert set(moments) == set(norm_layers(g)) == set(inputs)
    for name, inner in inputs.items():
        h, w = inner.shape[-2:]
        cells = torch.nn.functional.interpolate(mask, size=(h, w), mode="area")[0, 0].double()
        values = inner[0].double()
        for i, (top, left, bottom, right) in enumerate(boxes):
            t, l_ = round(top * h / 48), round(left * w / 64)
            b, r = round(bottom * h / 48), round(right * w / 64)
            cw, v = cells[t:b, l_:r], values[:, t:b, l_:r]
            want = torch.stack(
                [cw.sum().expand(v.shape[0]), (v * cw).sum((1, 2)), (v * v * cw).sum((1, 2))]
            )
            torch.testing.assert_close(moments[name][i], want, rtol=1e-5, atol=1e-6)


def _block_parts(y1, y2, counts, picks, weights):
    """Boxed and whole sums of the picked blocks, each weighted as the pooled pass does."""
    parts = []
    for j, i in enumerate(picks):
        n = counts[i] * weights[j]
        boxed = (float(n), y1[i] * n, y2[i] * n)
        parts.append((boxed, boxed))
    return parts


@pytest.mark.parametrize("k", [3, 6])
def test_regression_estimate_recovers_the_scene_from_a_biased_sample(k) -> None:
    """Blocks whose full-resolution moments are a linear function of their proxy's (as a
    downsampled view's nearly are): a sample over-representing the bright blocks is
    pulled back onto the whole scene's statistics, with one slope per layer (3 samples)
    or per channel (6); uncorrected it stays off."""
    torch.manual_seed(0)
    blocks, c = 12, 4
    x1 = torch.rand(blocks, c, dtype=torch.float64) * 2 - 1
    x2 = x1.square() + torch.rand(blocks, c, dtype=torch.float64) * 0.5
    slope1 = 0.7 if k == 3 else torch.tensor([0.5, 0.7, 0.9, 1.1], dtype=torch.float64)
    y1 = 0.2 + slope1 * x1
    y2 = 0.3 + 0.6 * x2  # a linear function of the proxy
    counts = torch.full((blocks,), 100.0, dtype=torch.float64)
    order = torch.argsort(x1[:, 0], descending=True)
    picks = sorted(int(i) for i in order[:k])  # the brightest blocks
    weights = [blocks / k] * k
    proxy = torch.stack([counts[:, None].expand(blocks, c), x1 * 100, x2 * 100], 1)
    parts = _block_parts(y1, y2, counts, picks, weights)
    mean, var = layers_mod._pool_sums(parts, (proxy, picks, weights))
    true_mean = y1.mean(0)
    true_var = y2.mean(0) - true_mean.square()
    torch.testing.assert_close(mean.double(), true_mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(var.double(), true_var, rtol=0, atol=1e-6)
    plain_mean, _ = layers_mod._pool_sums(parts)
    assert float((plain_mean.double() - true_mean).abs().max()) > 0.1


def test_regression_correction_is_nil_for_every_block_and_off_without_proxy_cells() -> None:
    torch.manual_seed(2)
    blocks, c = 5, 3
    y1, y2 = torch.rand(blocks, c).double(), torch.rand(blocks, c).double() + 1
    counts = torch.arange(1.0, blocks + 1).double() * 50
    proxy = torch.stack(
        [
            counts[:, None].expand(blocks, c),
            torch.rand(blocks, c).double(),
            torch.rand(blocks, c).double() + 1,
        ],
        1,
    )
    picks, weights = list(range(blocks)), [1.0] * blocks
    parts = _block_parts(y1, y2, counts, picks, weights)
    corrected = layers_mod._pool_sums(parts, (proxy, picks, weights))
    for got, want in zip(corrected, layers_mod._pool_sums(parts), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # a picked block without a valid cell in the view: the proxy cannot say, no correction
    picks, weights = [0, 3], [2.5, 2.5]
    parts = _block_parts(y1, y2, counts, picks, weights)
    empty = proxy.clone()
    empty[3] = 0
    corrected = layers_mod._pool_sums(parts, (empty, picks, weights))
    for got, want in zip(corrected, layers_mod._pool_sums(parts), strict=True):
        torch.testing.assert_close(got, want)


def test_pooled_forward_refuses_a_proxy_of_another_batch() -> None:
    g = _gen()
    x = torch.randn(1, 3, 32, 32)
    moments = block_moments(g, x, [(0, 0, 16, 32), (16, 0, 32, 32)])
    with pytest.raises(ModelError, match="block proxy covers 3 samples"):
        pooled_forward(g, torch.randn(2, 3, 32, 32), proxy=BlockProxy(moments, [0, 1, 1]))
    with pytest.raises(ModelError, match="one sample"):
        block_moments(g, torch.randn(2, 3, 32, 32), [(0, 0, 8, 8)])


@pytest.mark.parametrize("masked", [False, True])
def test_proxy_corrected_pooling_is_the_same_layer_by_layer_and_in_threads(masked) -> None:
    """The correction applies at every norm layer whichever way the pooled pass runs
    (layer by layer, or one sample per thread for a model it cannot see into), and it
    moves the statistics: the outputs are those of the corrected statistics fixed."""
    opaque = _Opaque()
    plain = opaque.g
    torch.manual_seed(4)
    view = torch.randn(1, 3, 64, 64)
    boxes = [(0, 0, 32, 32), (0, 32, 32, 64), (32, 0, 64, 32), (32, 32, 64, 64)]
    x = torch.randn(3, 3, 32, 32) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    mask = torch.ones(3, 1, 32, 32)
    if masked:
        mask[0, :, :8] = 0
    picks, weights = [0, 2, 3], [1.0, 2.0, 1.0]
    results = []
    for g, prefix in ((plain, ""), (opaque, "g.")):
        moments = block_moments(g, view, boxes)
        assert all(name.startswith(prefix) for name in moments)
        results.append(
            pooled_forward(
                g,
                x,
                mask if masked else None,
                weights=weights,
                proxy=BlockProxy(moments, picks),
            )
        )
    (out_a, stats_a), (out_b, stats_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    for name, (mean, var) in stats_a.items():
        torch.testing.assert_close(mean, stats_b["g." + name][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(var, stats_b["g." + name][1], atol=1e-5, rtol=1e-5)
    _, uncorrected = pooled_forward(plain, x, mask if masked else None, weights=weights)
    assert any(not torch.allclose(stats_a[n][0], uncorrected[n][0]) for n in stats_a)
    with torch.no_grad(), fixed_norm_stats(plain, stats_a):
        torch.testing.assert_close(plain(x), out_a, atol=1e-4, rtol=1e-4)
