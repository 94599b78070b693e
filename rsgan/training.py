"""Training: pure train steps, one loop with exact resume and DDP, and DCGAN generation.

The pieces, each usable alone:

* :func:`cyclegan_train_step` / :func:`dcgan_train_step`: one optimisation step on one
  batch; they take nets, optimisers, the batch, the fake pools and the config and return
  the losses. Nothing is kept between calls.
* :func:`prepare_cyclegan` / :func:`prepare_dcgan`: datasets, nets, optimisers,
  schedulers and pools as a :class:`TrainRun`.
* :func:`fit`: the loop. Seeded, logs to ``log.jsonl``, writes sample grids, checkpoints
  (``model.safetensors`` + ``train_state.pt``) at intervals, at the end and on Ctrl-C,
  and resumes exactly (RNG states, sampler position, pools, optimisers, schedulers).
  Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DistributedDataParallel (nccl on CUDA,
  gloo on CPU); only rank 0 writes.
* :func:`train_cyclegan` / :func:`train_dcgan`: prepare + fit from raster sources.
* :func:`generate`: DCGAN samples as GeoTIFF chips in the source dtype and a PNG grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Adam, Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from rsgan._device import autocast, resolve_device, resolve_precision
from rsgan._progress import tqdm
from rsgan._types import PathLike
from rsgan.checkpoint import (
    DomainInfo,
    LoadedModel,
    load_model,
    load_train_state,
    save_checkpoint,
    save_train_state,
    unwrap,
)
from rsgan.errors import (
    BandError,
    CheckpointError,
    ConfigError,
    NoChipsError,
    OutputExistsError,
    TileSpecError,
)
from rsgan.io import atomic_output, check_local_output, disk_errors_named
from rsgan.losses import (
    ImagePool,
    bce_loss,
    lsgan_loss,
    masked_l1,
    patch_weights,
    periodic_peaks,
)
from rsgan.models import (
    DCGAN_SIZES,
    CycleGANConfig,
    DCGANConfig,
    ResnetGenerator,
    build_nets,
    make_config,
)

DEFAULT_TILE = 256
"""CycleGAN chip size in pixels when none is given and no run is resumed."""
DEFAULT_LR = 2e-4
"""Adam learning rate when none is given and no run is resumed (both papers')."""
MIN_TILE = 24
"""The smallest CycleGAN chip: the default PatchGAN's (``3 * 2**n_layers`` px)."""

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
LOG_FILE = "log.jsonl"
SAMPLES_DIR = "samples"
GRID_SAMPLES = 64
"""Samples :func:`generate` shows in ``grid.png`` (the first ones)."""

Batch = Mapping[str, Tensor]
Nets = Mapping[str, nn.Module]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM, a scheduler's request to stop) during :func:`fit`.

    The first Ctrl-C or SIGTERM lets the running step finish, then checkpoint and state are
    saved; a second one stops at once without saving (the last interval checkpoint
    remains).

    Attributes:
        step: the last completed step.
        out_dir: where the checkpoint and state are (resume with ``resume=True``).
        saved: whether the checkpoint and state of ``step`` were saved.
        signum: the last signal that asked to stop (``signal.SIGINT`` or
            ``signal.SIGTERM``).
    """

    def __init__(
        self,
        step: int,
        out_dir: Path,
        saved: bool = True,
        signum: int = signal.SIGINT,
        saving: bool = False,
    ) -> None:
        if saved:
            text = (
                f"training interrupted after step {step}; the checkpoint and training state "
                f"are in {out_dir}: continue with resume=True (--resume)"
            )
        elif saving:
            text = (
                f"training interrupted after step {step} and stopped again while its "
                f"checkpoint was being saved, which may not have been completed; resume=True "
                f"(--resume) continues from the last complete save in {out_dir}, if any"
            )
        else:
            text = (
                f"training interrupted during step {step + 1} (stopped twice): nothing was "
                f"saved for it; resume=True (--resume) continues from the last checkpoint "
                f"in {out_dir}, if any"
            )
        super().__init__(text)
        self.step = step
        self.out_dir = out_dir
        self.saved = saved
        self.signum = signum


@dataclass(frozen=True)
class TrainOptions:
    """How to train (not what): steps, batch, learning rate, intervals, device, seed.

    Attributes:
        steps: total optimisation steps (a resumed run continues up to this number).
        batch_size: samples per step and process; None: 1 for cyclegan, 64 for dcgan.
        lr: Adam learning rate (betas 0.5, 0.999 as both papers); None:
            :data:`DEFAULT_LR` (2e-4), or the resumed run's. A rate given on resume
            replaces the run's from the resumed step on (to fine-tune at a lower rate),
            under the same schedule.
        decay_from: step from which the learning rate decays linearly to 0 at ``steps``;
            None: ``steps // 2`` for cyclegan (the paper's half constant, half decay), no
            decay for dcgan.
        sample_every: write a sample grid every this many steps (0: never).
        checkpoint_every: save checkpoint and state every this many steps (0: only at the
            end and on Ctrl-C).
        log_every: append the losses to ``log.jsonl`` every this many steps.
        device: "auto" (CUDA if present, else CPU), "cpu", "cuda" or "cuda:N".
        precision: "fp32" or "bf16" (autocast); None: bf16 on CUDA GPUs that compute it
        natively (compute capability 8.0+), else fp32.
        seed: seeds nets, data order, pools and noise.
        num_workers: DataLoader worker processes.
        resume: continue the run in ``out_dir`` from its checkpoint and training state.
        overwrite: start over in an ``out_dir`` that holds an earlier run.
        progress: show a tqdm progress bar with the losses.
        n_samples: images in a DCGAN sample grid (None: 64), or rows of each domain in a
            CycleGAN one (None: 4).
    """

    steps: int = 10_000
    batch_size: int | None = None
    lr: float | None = None
    decay_from: int | None = None
    sample_every: int = 500
    checkpoint_every: int = 1000
    log_every: int = 10
    device: str = "auto"
    precision: str | None = None
    seed: int = 0
    num_workers: int = 0
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    n_samples: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"TrainOptions.steps must be >= 1; got {self.steps}")
        for name in ("batch_size", "n_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"TrainOptions.{name} must be >= 1 or None; got {value}")
        for name in ("sample_every", "checkpoint_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrainOptions.{name} must be >= 0; got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1; got {self.log_every}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number; got {self.lr}")
        if self.decay_from is not None and self.decay_from < 0:
            raise ConfigError(f"decay_from must be >= 0; got {self.decay_from}")
        if self.resume and self.overwrite:
            raise ConfigError("resume and overwrite exclude each other; pass one of them")


# --------------------------------------------------------------------------- train steps


def _set_requires_grad(nets: Sequence[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _domain(batch: Batch, key: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """Images ``(N, C, H, W)`` with invalid pixels zeroed, and masks ``(N, 1, H, W)`` float."""
    image = batch[key].to(device, non_blocking=True).float()
    mask = batch.get(f"{key}_mask")
    if mask is None:
        mask = torch.ones(image.shape[0], 1, *image.shape[-2:], device=device)
    else:
        mask = mask.to(device, non_blocking=True)
        mask = (mask.unsqueeze(1) if mask.ndim == 3 else mask).float()
    return image * mask, mask


def _sparse(mask: Tensor) -> Tensor | None:
    """None when every pixel is valid (the nets then take their fast unmasked path)."""
    return None if bool(mask.min() >= 1) else mask


def _zero_invalid(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with invalid pixels set to 0 (``mask`` None: all valid, ``x`` unchanged)."""
    return x if mask is None else x * mask


def _floats(losses: Mapping[str, Tensor]) -> dict[str, float]:
    values = torch.stack([v.detach().float() for v in losses.values()]).tolist()
    return dict(zip(losses, values, strict=True))


def cyclegan_train_step(
    nets: Nets,
    opts: Mapping[str, Optimizer],
    batch: Batch,
    pools: Mapping[str, ImagePool],
    cfg: CycleGANConfig,
    *,
    device: torch.device,
    precision: str,
) -> dict[str, float]:
    """One CycleGAN step (Zhu et al. 2017): generators, then both discriminators.

    Least-squares adversarial losses, cycle L1 weighted ``cfg.lambda_cycle`` and, when A
    and B have the same bands, identity L1 weighted ``lambda_identity * lambda_cycle``,
    and with ``lambda_periodic`` > 0 the power each generator's fakes add at the
    frequencies of its stride grid, beyond its inputs', over squares of
    ``rsgan.losses.PERIODIC_WINDOW`` px (:func:`rsgan.losses.periodic_peaks`);
    discriminators see fakes through the pools and are halved. Invalid pixels are zeroed
    in the inputs and left out of every loss and of the norm statistics; discriminator
    patches that are mostly invalid are left out.

    Args:
        nets: ``G_AB``, ``G_BA``, ``D_A``, ``D_B`` (plain or DDP-wrapped).
        opts: ``"G"`` (both generators) and ``"D"`` (both discriminators).
        batch: ``a`` ``(N, C_a, H, W)``, ``b`` ``(N, C_b, H, W)`` in [-1, 1], and optional
            ``a_mask``/``b_mask`` ``(N, H, W)`` bool.
        pools: ``"A"`` and ``"B"``, the fake pools.
        cfg: the loss weights.
        device, precision: where and how (``"fp32"``/``"bf16"``) to compute.

    Returns:
        Losses as floats: ``G`` (total), ``G_AB``, ``G_BA``, ``cycle_A``, ``cycle_B``,
        ``idt_A``, ``idt_B``, ``periodic_AB``, ``periodic_BA`` (when weighted), ``D_A``,
        ``D_B``.
    """
    a, mask_a = _domain(batch, "a", device)
    b, mask_b = _domain(batch, "b", device)
    ma, mb = _sparse(mask_a), _sparse(mask_b)
    g_ab, g_ba, d_a, d_b = nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"]

    # generators: D frozen and called unwrapped (no DDP gradient sync for them here)
    _set_requires_grad((d_a, d_b), False)
    opts["G"].zero_grad(set_to_none=True)
    with autocast(device, precision):
        fake_b = _zero_invalid(g_ab(a, mask=ma), ma)  # (N, C_b, H, W)
        rec_a = g_ba(fake_b, mask=ma)
        fake_a = _zero_invalid(g_ba(b, mask=mb), mb)
        rec_b = g_ab(fake_a, mask=mb)
        pred_b = unwrap(d_b)(fake_b, mask=ma)
        pred_a = unwrap(d_a)(fake_a, mask=mb)
        losses = {
            "G_AB": lsgan_loss(pred_b, True, patch_weights(ma, pred_b)),
            "G_BA": lsgan_loss(pred_a, True, patch_weights(mb, pred_a)),
            "cycle_A": masked_l1(rec_a, a, ma) * cfg.lambda_cycle,
            "cycle_B": masked_l1(rec_b, b, mb) * cfg.lambda_cycle,
        }
        if cfg.uses_identity:
            weight = cfg.lambda_cycle * cfg.lambda_identity
            losses["idt_A"] = masked_l1(g_ba(a, mask=ma), a, ma) * weight
            losses["idt_B"] = masked_l1(g_ab(b, mask=mb), b, mb) * weight
        if cfg.lambda_periodic > 0:
            stride = ResnetGenerator.size_multiple
            for name, fake, real, m in (("AB", fake_b, a, ma), ("BA", fake_a, b, mb)):
                loss = periodic_peaks(fake, real, stride, m)
                losses[f"periodic_{name}"] = loss * cfg.lambda_periodic
    loss_g = cast(Tensor, sum(losses.values()))  # losses is never empty
    loss_g.backward()
    opts["G"].step()

    # discriminators, on real images and pooled fakes
    _set_requires_grad((d_a, d_b), True)
    opts["D"].zero_grad(set_to_none=True)
    pool_b, pool_mb = pools["B"].query(fake_b, mask_a)
    pool_a, pool_ma = pools["A"].query(fake_a, mask_b)
    d_losses = {}
    with autocast(device, precision):
        for name, d, real, m_real, fake, m_fake in (
            ("D_A", d_a, a, ma, pool_a, _sparse(pool_ma)),
            ("D_B", d_b, b, mb, pool_b, _sparse(pool_mb)),
        ):
            pred_real = d(real, mask=m_real)
            pred_fake = d(fake, mask=m_fake)
            d_losses[name] = 0.5 * (
                lsgan_loss(pred_real, True, patch_weights(m_real, pred_real))
                + lsgan_loss(pred_fake, False, patch_weights(m_fake, pred_fake))
            )
    cast(Tensor, sum(d_losses.values())).backward()
    opts["D"].step()
    return _floats({"G": loss_g, **losses, **d_losses})


def dcgan_train_step(
    nets: Nets,
    opts: Mapping[str, Optimizer],
    batch: Batch,
    pools: Mapping[str, ImagePool],
    cfg: DCGANConfig,
    *,
    device: torch.device,
    precision: str,
) -> dict[str, float]:
    """One DCGAN step (Radford et al. 2016): D on a real and a fake batch, then G.

    Binary cross-entropy on logits; G maximises log D(G(z)) (the non-saturating loss).
    Noise comes from torch's global generator (saved for exact resume).

    Args:
        nets: ``G`` and ``D`` (plain or DDP-wrapped).
        opts: ``"G"`` and ``"D"``.
        batch: ``image`` ``(N, C, H, W)`` in [-1, 1] (``mask`` is ignored: train DCGANs
            on chips without nodata).
        pools: unused (DCGAN has no pool); pass ``{}``.
        cfg: the architecture (for the latent size).
        device, precision: where and how to compute.

    Returns:
        ``D``, ``G`` losses and ``D_real``/``D_fake``, D's mean probability of "real".
    """
    del pools
    real = batch["image"].to(device, non_blocking=True).float()
    g, d = nets["G"], nets["D"]
    z = torch.randn(real.shape[0], cfg.nz, device=device)
    opts["D"].zero_grad(set_to_none=True)
    with autocast(device, precision):
        fake = g(z)
        logits_real = d(real)
        logits_fake = d(fake.detach())
        loss_d = bce_loss(logits_real, True) + bce_loss(logits_fake, False)
    loss_d.backward()
    opts["D"].step()

    _set_requires_grad((d,), False)
    opts["G"].zero_grad(set_to_none=True)
    with autocast(device, precision):
        loss_g = bce_loss(unwrap(d)(fake), True)
    loss_g.backward()
    opts["G"].step()
    _set_requires_grad((d,), True)
    return _floats(
        {
            "D": loss_d,
            "G": loss_g,
            "D_real": torch.sigmoid(logits_real.detach().float()).mean(),
            "D_fake": torch.sigmoid(logits_fake.detach().float()).mean(),
        }
    )


# --------------------------------------------------------------------------- samples


def _shown(domain: DomainInfo) -> tuple[int, ...]:
    """The 1-based bands of a domain's images that a preview shows as red, green and blue:
    those its recorded colour interpretation or band descriptions name
    (:func:`rsgan.io.preview_bands`), else bands 1, 2, 3, else band 1 in grey."""
    from rsgan.io import preview_bands

    return preview_bands(domain.count, domain.descriptions or (), domain.colorinterp or ())


def _to_uint8(x: Tensor, bands: Sequence[int]) -> np.ndarray:
    """Model values [-1, 1] ``(C, H, W)`` -> uint8 ``(len(bands), H, W)`` of the 1-based
    ``bands`` for a preview (linear, clipped)."""
    x = x[[b - 1 for b in bands]]
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _write_grid(
    images: Sequence[Tensor], shown: Sequence[tuple[int, ...]], path: Path, ncols: int
) -> Path:
    """A grid PNG of ``images``, each showing its bands ``shown`` as red, green and blue."""
    from rsgan.io import write_png_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [_to_uint8(x, bands) for x, bands in zip(images, shown, strict=True)]
    return write_png_grid(pictures, path, ncols, overwrite=True)


def _cyclegan_sample_inputs(run: TrainRun, n: int, seed: int) -> dict[str, Tensor]:
    """The first ``n`` pairs of the data (fixed for the whole run)."""
    del seed
    items = [run.dataset[i] for i in range(min(n, len(run.dataset)))]  # type: ignore[arg-type]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _cyclegan_samples(
    nets: Nets,
    inputs: Batch,
    path: Path,
    device: torch.device,
    precision: str,
    shown: Mapping[str, tuple[int, ...]],
) -> Path:
    """Rows of A, A->B, A->B->A, then rows of B, B->A, B->A->B; each image shows the
    bands ``shown`` for its domain (``"a"``, ``"b"``)."""
    a, mask_a = _domain(inputs, "a", device)
    b, mask_b = _domain(inputs, "b", device)
    g_ab, g_ba = unwrap(nets["G_AB"]), unwrap(nets["G_BA"])
    with torch.no_grad(), autocast(device, precision):
        fake_b = g_ab(a, mask=_sparse(mask_a)) * mask_a
        rec_a = g_ba(fake_b, mask=_sparse(mask_a)) * mask_a
        fake_a = g_ba(b, mask=_sparse(mask_b)) * mask_b
        rec_b = g_ab(fake_a, mask=_sparse(mask_b)) * mask_b
    rows = [x for triple in zip(a, fake_b, rec_a, strict=True) for x in triple]
    rows += [x for triple in zip(b, fake_a, rec_b, strict=True) for x in triple]
    row_a, row_b = [shown["a"], shown["b"], shown["a"]], [shown["b"], shown["a"], shown["b"]]
    bands = row_a * len(a) + row_b * len(b)
    return _write_grid(rows, bands, path, ncols=3)


def _dcgan_sample_inputs(run: TrainRun, n: int, seed: int) -> dict[str, Tensor]:
    """``n`` fixed latent vectors (their own generator: training noise is untouched)."""
    rng = torch.Generator().manual_seed(seed)
    return {"z": torch.randn(n, run.config.nz, generator=rng)}


def _dcgan_samples(
    nets: Nets,
    inputs: Batch,
    path: Path,
    device: torch.device,
    precision: str,
    shown: Mapping[str, tuple[int, ...]],
) -> Path:
    g = unwrap(nets["G"])
    was_training = g.training
    g.eval()
    with torch.no_grad(), autocast(device, precision):
        images = g(inputs["z"].to(device))
    g.train(was_training)
    bands = [shown["data"]] * len(images)
    return _write_grid(list(images), bands, path, ncols=max(1, math.isqrt(len(images))))


@dataclass(frozen=True)
class _Trainer:
    """What differs between model kinds in the loop."""

    step: Callable[..., dict[str, float]]
    sample_inputs: Callable[[TrainRun, int, int], dict[str, Tensor]]
    samples: Callable[..., Path]
    default_batch: int
    default_samples: int
    decays: bool


_TRAINERS: dict[str, _Trainer] = {
    "cyclegan": _Trainer(
        cyclegan_train_step,
        _cyclegan_sample_inputs,
        _cyclegan_samples,
        default_batch=1,
        default_samples=4,
        decays=True,
    ),
    "dcgan": _Trainer(
        dcgan_train_step,
        _dcgan_sample_inputs,
        _dcgan_samples,
        default_batch=64,
        default_samples=64,
        decays=False,
    ),
}


# --------------------------------------------------------------------------- the run


@dataclass
class TrainRun:
    """Everything a training loop works on. Build it with :func:`prepare_cyclegan` or
    :func:`prepare_dcgan` (or by hand), then call :func:`fit`.

    Attributes:
        kind: "cyclegan" or "dcgan".
        config: the architecture config.
        nets: ``{name: module}`` (unwrapped; :func:`fit` moves them to the device).
        optimizers: ``{"G": ..., "D": ...}``.
        dataset: items as the kind's train step reads them.
        domains: ``{domain: DomainInfo}`` for the checkpoint metadata.
        data_summary: JSON-safe description of the data for the metadata.
        pools: the fake pools (cyclegan) by domain.
        lr_lambda: step -> learning-rate factor (schedulers are made by :func:`fit`).
    """

    kind: str
    config: Any
    nets: dict[str, nn.Module]
    optimizers: dict[str, Optimizer]
    dataset: Dataset
    domains: dict[str, DomainInfo]
    data_summary: dict[str, Any] = field(default_factory=dict)
    pools: dict[str, ImagePool] = field(default_factory=dict)
    lr_lambda: Callable[[int], float] = lambda step: 1.0


def linear_decay(steps: int, start: int) -> Callable[[int], float]:
    """The learning-rate factor of the CycleGAN paper's schedule, for
    :class:`torch.optim.lr_scheduler.LambdaLR`: 1 until step ``start``, then down in a
    straight line to 0 at ``steps`` (``start >= steps``: constant)."""
    span = max(steps - start, 1)

    def factor(step: int) -> float:
        return max(0.0, 1.0 - max(0, step - start) / span)

    return factor


def _lr_lambda(kind: str, options: TrainOptions) -> Callable[[int], float]:
    """Constant until ``decay_from``, then linearly down to 0 at ``steps``."""
    if options.decay_from is not None:
        start = options.decay_from
    else:
        start = options.steps // 2 if _TRAINERS[kind].decays else options.steps
    return linear_decay(options.steps, start)


def _adam(nets: Sequence[nn.Module], lr: float) -> Adam:
    """Adam at ``lr`` (a resumed run's optimisers then take the rates of its state)."""
    params = itertools.chain.from_iterable(net.parameters() for net in nets)
    return Adam(params, lr=lr, betas=(0.5, 0.999))


class _EpochDataset(Dataset):
    """Gives a dataset without ``set_epoch`` a no-op one (for UnpairedDataset)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        return self.dataset[i]

    def set_epoch(self, epoch: int) -> None:
        setter = getattr(self.dataset, "set_epoch", None)
        if setter is not None:
            setter(epoch)


def _domain_info(dataset: Dataset, stored: DomainInfo | None = None) -> DomainInfo:
    """Band list, count, dtype, normaliser, band descriptions and colour interpretation of
    a chip dataset (or a generic one)."""
    count = getattr(dataset, "count", None)
    if count is None:
        count = int(dataset[0]["image"].shape[0])
    descriptions = colorinterp = None
    scenes = getattr(dataset, "scenes", None)
    bands = getattr(dataset, "bands", None)
    if scenes and bands:
        from rsgan.io import describe

        info = describe(scenes[0])
        descriptions = tuple(info.descriptions[b - 1] for b in bands)
        colorinterp = tuple(info.colorinterp[b - 1].name for b in bands)
    return DomainInfo(
        bands=bands if bands is not None else (stored.bands if stored else None),
        count=int(count),
        dtype=str(getattr(dataset, "dtype", stored.dtype if stored else "float32")),
        normalizer=getattr(dataset, "normalizer", stored.normalizer if stored else None),
        descriptions=descriptions,
        colorinterp=colorinterp,
    )


def _chip_size(source: Any, size: int) -> int | None:
    """The chip side in px of ``source``: ``size`` for rasters (cut into chips of it); for a
    Dataset, the one it tells (a :class:`rsgan.data.ChipDataset`'s ``spec.size``), else
    None (its items are not read to find out)."""
    if not _is_dataset(source):
        return size
    spec_size = getattr(getattr(source, "spec", None), "size", None)
    return int(spec_size) if isinstance(spec_size, int) else None


def _summary(dataset: Dataset, size: int | None) -> dict[str, Any]:
    """The data summary of one domain for the checkpoint; ``size``: its chip side in px,
    None when unknown."""
    scenes = list(getattr(dataset, "scenes", []) or [])
    return {
        "chips": len(dataset),  # type: ignore[arg-type]
        "chip_size": size,
        "scenes": len(scenes),
        "sources": [str(s) for s in scenes[:50]],
    }


def _is_dataset(source: Any) -> bool:
    return isinstance(source, Dataset)


def _stored_model(out_dir: PathLike, options: TrainOptions) -> LoadedModel | None:
    """The checkpoint of the run being resumed (None when not resuming)."""
    if not options.resume:
        return None
    path = Path(out_dir) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(
            f"cannot resume: {path} does not exist; start without --resume (resume=False)"
        )
    return load_model(path)


def _smaller_scene(source: Any, size: int) -> tuple[str, int, int] | None:
    """The first scene of ``source`` smaller than ``size`` px on a side, as (path, width,
    height); None if there is none (or ``source`` is a chip index)."""
    from rsgan.data import _expand_sources
    from rsgan.io import describe

    scenes, _ = _expand_sources(source)
    for scene in scenes or []:
        info = describe(scene)
        if min(info.width, info.height) < size:
            return str(scene), info.width, info.height
    return None


def _check_resumed_domain(
    source: Any, bands: Sequence[int] | None, stored: DomainInfo, name: str
) -> None:
    """Refuse data that the resumed run's normaliser of domain ``name`` (``"a"``, ``"b"``,
    ``"data"``) does not fit: another number of bands, or another data type (its
    ``lo..hi`` are source values of the run's type: uint16 reflectances clip uint8 data to
    -1, and the checkpoint would record a uint8 domain denormalised into them). Checked on
    the header of the first scene (``check_scenes_alike`` makes the others alike)."""
    from rsgan.data import _expand_sources
    from rsgan.io import check_bands, describe, source_path

    scenes, index = _expand_sources(source)
    if scenes:
        scene: Path | str = scenes[0]
    elif index is not None and len(index):
        scene = source_path(index["scene"].iloc[0])
    else:
        return
    info = describe(scene)
    chosen = check_bands(info.count, bands, path=scene)
    label = "the run" if name == "data" else _DOMAIN_LABELS.get(name, f"domain {name}")
    new_run = (
        "or start a new run on these data (another out folder, or overwrite=True / --overwrite)"
    )
    if len(chosen) != stored.count:
        run_bands = stored.bands or tuple(range(1, stored.count + 1))
        option = "bands" if name == "data" else f"bands_{name}"
        flag = "--" + option.replace("_", "-")
        raise BandError(
            f"resume: {label} was trained on {stored.count} band(s) {tuple(run_bands)}, but "
            f"bands {chosen} of {scene} are {len(chosen)}; resume with {option}="
            f"{tuple(run_bands)} ({flag} {','.join(map(str, run_bands))}), {new_run}"
        )
    dtype = info.dtypes[chosen[0] - 1]
    if dtype != stored.dtype and stored.normalizer is not None:
        lo, hi = stored.normalizer.lo[0], stored.normalizer.hi[0]
        raise BandError(
            f"resume: {label} was trained on {stored.dtype} data (its normaliser maps "
            f"{lo:g}..{hi:g} of band {chosen[0]} onto -1..1), but {scene} is {dtype}; resume "
            f"on {stored.dtype} data like the run's, {new_run}"
        )


def _chips(
    source: Any,
    *,
    size: int,
    bands: Sequence[int] | None,
    max_nodata: float | None,
    stored: DomainInfo | None,
    seed: int,
    smaller: Callable[[int], str],
    name: str,
) -> Dataset:
    """Chips of ``size`` px of ``source`` (a Dataset as it is), domain ``name`` of the run.
    ``smaller`` gives, for the side of a scene smaller than the chips, the fix the caller
    offers (its own option: ``rsgan chips``'s ``--edge pad`` is not one of training's)."""
    if _is_dataset(source):
        return source
    from rsgan.data import ChipDataset

    bands = bands if bands is not None else (stored.bands if stored else None)
    if stored is not None and stored.normalizer is not None:
        _check_resumed_domain(source, bands, stored, name)
    try:
        return ChipDataset(
            source,
            size=size,
            bands=bands,
            normalizer=stored.normalizer if stored else None,
            max_nodata=max_nodata,
            seed=seed,
        )
    except NoChipsError:
        raise NoChipsError(_no_chips(name, size, max_nodata)) from None
    except TileSpecError:
        small = _smaller_scene(source, size)
        if small is None:
            raise
        scene, width, height = small
        raise TileSpecError(
            f"scene {scene} ({width} x {height} px) is smaller than the {size} px chips to "
            f"train on; {smaller(min(width, height))}"
        ) from None


def _no_chips(name: str, size: int, max_nodata: float | None) -> str:
    """Why no chip of domain ``name`` was kept, and the fix (the nodata filter)."""
    if name == "data":
        smaller = "a smaller image_size (--size) or " if size > DCGAN_SIZES[0] else ""
        return (
            f"no chip of {size} px of the data is free of nodata, and a DCGAN trains on "
            f"chips without nodata (its losses have no mask); pass {smaller}scenes with "
            f"complete areas of {size} px, or, if the pixels equal to the nodata value are "
            "real, scenes without that nodata value"
        )
    return (
        f"{_DOMAIN_LABELS.get(name, f'domain {name}')}: no chip of {size} px has at most "
        f"{max_nodata or 0:.0%} nodata pixels; raise max_nodata (--max-nodata), pass a "
        "smaller tile (--tile) or scenes with fewer nodata pixels"
    )


def _smaller_tile(side: int) -> str:
    """The fix for a CycleGAN tile larger than a scene of ``side`` px."""
    largest = side // ResnetGenerator.size_multiple * ResnetGenerator.size_multiple
    if largest < MIN_TILE:
        return f"leave the scene out (CycleGAN chips are at least {MIN_TILE} px)"
    return f"pass tile={largest} (--tile {largest}) or less, or leave the scene out"


def _smaller_image_size(side: int) -> str:
    """The fix for a DCGAN image size larger than a scene of ``side`` px."""
    fits = [s for s in DCGAN_SIZES if s <= side]
    if not fits:
        return f"leave the scene out (DCGAN images are at least {DCGAN_SIZES[0]} px)"
    return f"pass image_size={fits[-1]} (--size {fits[-1]}) or less, or leave the scene out"


def _smaller_on_resume(size: int, option: str) -> Callable[[int], str]:
    """The fix for a scene smaller than a resumed run's chips of ``size`` px, whose size
    the run fixes (``option``: ``tile``, ``image_size``): a smaller one would be refused."""

    def fix(side: int) -> str:
        del side
        return (
            f"leave the scene out to resume the run (its chips are {size} px, and a resumed "
            f"run keeps its {option}), or start a new run on it with a smaller {option} "
            "(another out folder, or overwrite=True / --overwrite)"
        )

    return fix


_DOMAIN_LABELS = {"a": "domain A", "b": "domain B", "data": "the data"}


def _source_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """How the scenes of one domain differ from a run's recorded ones (data summaries of
    :func:`_summary`); None when they are the same or cannot be told (Dataset sources)."""
    was, now = list(old.get("sources") or []), list(new.get("sources") or [])
    if not was or not now:
        return None
    for old_scene, new_scene in zip(was, now, strict=False):
        if old_scene != new_scene:
            return f"reads {new_scene} where it read {old_scene}"
    if old.get("scenes") != new.get("scenes"):
        return f"reads {new.get('scenes')} scene(s) where it read {old.get('scenes')}"
    return None


_PACKAGE_DIR = os.path.dirname(__file__) + os.sep  # as code objects name their files


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller of this function point
    at the first caller outside rsgan (the caller of ``train_cyclegan``, ``fit``, ...),
    however deep in rsgan the warning is issued."""
    level, frame = 1, sys._getframe(1)  # level 1: the function about to warn
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def _is_main_process() -> bool:
    """Rank 0 of a torchrun (``RANK``) or process group, or a single process: the one that
    warns (once per run, not once per rank)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _warn_other_data(
    stored: LoadedModel | None, summary: Mapping[str, Any], domains: Mapping[str, DomainInfo]
) -> None:
    """One warning (on rank 0 only under torchrun) when a resumed run reads other scenes or
    bands than the run recorded (swapped domains, a domain pointed at another folder): it
    goes on, with the run's normalisers, but it no longer continues the same training."""
    if stored is None or not _is_main_process():
        return
    recorded = stored.metadata.get("data") or {}
    changes = []
    for name, new in summary.items():
        label = _DOMAIN_LABELS.get(name, f"domain {name}")
        change = _source_change(recorded.get(name) or {}, new)
        if change:
            changes.append(f"{label} {change}")
        was, now = stored.domains[name].bands, domains[name].bands
        if was is not None and now is not None and was != now:
            changes.append(f"{label} reads bands {now} where it read {was}")
    if not changes:
        return
    a, b = recorded.get("a") or {}, recorded.get("b") or {}
    swapped = (
        a.get("sources") != b.get("sources")
        and a.get("sources") == summary.get("b", {}).get("sources")
        and b.get("sources") == summary.get("a", {}).get("sources")
    )
    warnings.warn(
        f"resume: the data differ from those the run was trained on: {'; '.join(changes)}"
        f"{' (domains A and B swapped?)' if swapped else ''}; training goes on with them "
        "and the run's normalisers; pass the run's sources and bands to continue it as "
        "it was",
        stacklevel=_outside_stacklevel(),
    )


def _resolve_tile(tile: int | None, stored: LoadedModel | None) -> int:
    """The CycleGAN chip size: as given, else the resumed run's, else :data:`DEFAULT_TILE`.

    A run on Datasets that did not tell their chip size recorded none: any tile resumes it.

    Raises:
        ConfigError: when resuming with a tile other than the run's (its fake pools hold
            chips of the run's size, and the run's chips would silently change size).
    """
    data = (stored.metadata.get("data") or {}) if stored else {}
    sizes = [(data.get(name) or {}).get("chip_size") for name in ("a", "b")]
    recorded = next((size for size in sizes if size), None)
    if tile is None:
        return int(recorded) if recorded else DEFAULT_TILE
    if recorded and tile != recorded:
        raise ConfigError(
            f"resume: tile {tile} px differs from the {recorded} px chips the run was trained "
            f"on; resume without a tile (--tile) or with tile={recorded} (--tile {recorded})"
        )
    return tile


def _resolve_config(
    kind: str, config: Any, data_fields: Mapping[str, Any], stored: LoadedModel | None
) -> Any:
    """The run's config: a dataclass as given; a (partial) dict or None completed from the
    checkpoint being resumed, else from the data (band counts) and the defaults.

    Raises:
        ConfigError: when resuming with a config that differs from the checkpoint's.
    """
    if config is None or isinstance(config, Mapping):
        base = stored.config.to_dict() if stored else dict(data_fields)
        config = {**base, **(config or {})}
    config = make_config(kind, config)
    if stored is not None and config != stored.config:
        given, run = config.to_dict(), stored.config.to_dict()
        names = [name for name in given if given[name] != run.get(name)]
        flags = [_CONFIG_FLAGS[name] for name in names if name in _CONFIG_FLAGS]

        def listed(values: Mapping[str, Any]) -> str:
            return ", ".join(f"{name}={values.get(name)!r}" for name in names)

        one = len(names) == 1
        raise ConfigError(
            f"resume: {listed(given)} {'differs' if one else 'differ'} from the run's "
            f"{listed(run)} (a run keeps its architecture and loss weights); resume without "
            f"{'it' if one else 'them'} (leave {'it' if one else 'them'} out of config"
            f"{', no ' + ', '.join(flags) if flags else ''}) or start a new run "
            "(another out folder, or overwrite=True / --overwrite)"
        )
    return config


_CONFIG_FLAGS = {
    "ngf": "--ngf",
    "ndf": "--ndf",
    "nz": "--nz",
    "image_size": "--size",
    "n_blocks": "--n-blocks",
    "lambda_cycle": "--lambda-cycle",
    "lambda_identity": "--lambda-identity",
    "pool_size": "--pool-size",
    "upsample": "--upsample",
    "lambda_periodic": "--lambda-periodic",
}
"""The ``rsgan train`` options of config fields, for resume errors."""


def prepare_cyclegan(
    domain_a: Any,
    domain_b: Any,
    *,
    config: CycleGANConfig | Mapping[str, Any] | None = None,
    options: TrainOptions | None = None,
    tile: int | None = None,
    bands_a: Sequence[int] | None = None,
    bands_b: Sequence[int] | None = None,
    max_nodata: float | None = 0.5,
    stored: LoadedModel | None = None,
) -> TrainRun:
    """Datasets, nets (seeded), Adam optimisers and pools for a CycleGAN run.

    Args:
        domain_a, domain_b: raster paths, folders or chip index files (read as
            :class:`rsgan.data.ChipDataset` chips of ``tile`` px), or torch Datasets
            yielding ``{"image": (C, H, W) float32 in [-1, 1], "mask": (H, W) bool}``.
        config: the architecture; None: the defaults with the data's band counts.
        options: training options (the seed and learning rate are used here).
        tile: chip size in pixels (a multiple of 4, at least 24); None: the resumed run's,
            else :data:`DEFAULT_TILE` (256).
        bands_a, bands_b: 1-based bands to read from each domain (None: all).
        max_nodata: leave out chips with more nodata than this fraction.
        stored: the checkpoint being resumed (its normalisers, bands and tile are reused).

    Raises:
        BandError: the data's band counts do not match ``config``.
        ConfigError: a bad tile size, or one other than the resumed run's.
    """
    options = options or TrainOptions()
    tile = _resolve_tile(tile, stored)
    if tile % ResnetGenerator.size_multiple or tile < MIN_TILE:
        raise ConfigError(
            f"tile {tile}: CycleGAN chips must be a multiple of "
            f"{ResnetGenerator.size_multiple} and at least {MIN_TILE} px (the PatchGAN's "
            "minimum); use e.g. 128 or 256"
        )
    from rsgan.data import UnpairedDataset

    stored_a = stored.domains["a"] if stored else None
    stored_b = stored.domains["b"] if stored else None
    smaller = _smaller_on_resume(tile, "tile") if stored else _smaller_tile
    ds_a = _chips(
        domain_a,
        size=tile,
        bands=bands_a,
        max_nodata=max_nodata,
        stored=stored_a,
        seed=options.seed,
        smaller=smaller,
        name="a",
    )
    ds_b = _chips(
        domain_b,
        size=tile,
        bands=bands_b,
        max_nodata=max_nodata,
        stored=stored_b,
        seed=options.seed + 1,
        smaller=smaller,
        name="b",
    )
    info_a, info_b = _domain_info(ds_a, stored_a), _domain_info(ds_b, stored_b)
    counts = {"in_channels_a": info_a.count, "in_channels_b": info_b.count}
    config = cast(CycleGANConfig, _resolve_config("cyclegan", config, counts, stored))
    for name, info, want in (
        ("A", info_a, config.in_channels_a),
        ("B", info_b, config.in_channels_b),
    ):
        if info.count != want:
            raise BandError(
                f"domain {name} chips have {info.count} band(s) but the config expects "
                f"{want}; select bands (bands_{name.lower()}=...) or use a config with "
                f"in_channels_{name.lower()}={info.count}"
            )
    data_summary = {
        "a": _summary(ds_a, _chip_size(domain_a, tile)),
        "b": _summary(ds_b, _chip_size(domain_b, tile)),
    }
    _warn_other_data(stored, data_summary, {"a": info_a, "b": info_b})
    torch.manual_seed(options.seed)
    nets = build_nets("cyclegan", config)
    dataset = UnpairedDataset(_EpochDataset(ds_a), _EpochDataset(ds_b), seed=options.seed)
    return TrainRun(
        kind="cyclegan",
        config=config,
        nets=nets,
        optimizers={
            "G": _adam((nets["G_AB"], nets["G_BA"]), options.lr or DEFAULT_LR),
            "D": _adam((nets["D_A"], nets["D_B"]), options.lr or DEFAULT_LR),
        },
        dataset=dataset,
        domains={"a": info_a, "b": info_b},
        data_summary=data_summary,
        pools={
            "A": ImagePool(config.pool_size, seed=options.seed),
            "B": ImagePool(config.pool_size, seed=options.seed + 1),
        },
        lr_lambda=_lr_lambda("cyclegan", options),
    )


def prepare_dcgan(
    source: Any,
    *,
    config: DCGANConfig | Mapping[str, Any] | None = None,
    options: TrainOptions | None = None,
    bands: Sequence[int] | None = None,
    stored: LoadedModel | None = None,
) -> TrainRun:
    """Dataset (complete chips of ``config.image_size`` px), nets and optimisers for a DCGAN.

    Args:
        source: raster paths, a folder of images or a chip index; or a torch Dataset
            yielding ``{"image": (C, H, W) float32 in [-1, 1], ...}``.
        config: the architecture; None: defaults (64 px) with the data's band count.
        options: training options.
        bands: 1-based bands to read (None: all).
        stored: the checkpoint being resumed.
    """
    options = options or TrainOptions()
    if isinstance(config, DCGANConfig):
        size = config.image_size
    else:
        size = dict(config or {}).get("image_size") or (
            stored.config.image_size if stored else DCGANConfig.image_size
        )
    stored_info = stored.domains["data"] if stored else None
    ds = _chips(
        source,
        size=size,
        bands=bands,
        max_nodata=0.0,
        stored=stored_info,
        seed=options.seed,
        smaller=_smaller_on_resume(size, "image_size") if stored else _smaller_image_size,
        name="data",
    )
    info = _domain_info(ds, stored_info)
    config = cast(
        DCGANConfig,
        _resolve_config("dcgan", config, {"channels": info.count, "image_size": size}, stored),
    )
    if info.count != config.channels:
        raise BandError(
            f"the chips have {info.count} band(s) but the DCGAN config expects "
            f"{config.channels}; select bands (bands=...) or use channels={info.count}"
        )
    data_summary = {"data": _summary(ds, _chip_size(source, size))}
    _warn_other_data(stored, data_summary, {"data": info})
    torch.manual_seed(options.seed)
    nets = build_nets("dcgan", config)
    return TrainRun(
        kind="dcgan",
        config=config,
        nets=nets,
        optimizers={
            "G": _adam((nets["G"],), options.lr or DEFAULT_LR),
            "D": _adam((nets["D"],), options.lr or DEFAULT_LR),
        },
        dataset=_EpochDataset(ds),
        domains={"data": info},
        data_summary=data_summary,
        lr_lambda=_lr_lambda("dcgan", options),
    )


# --------------------------------------------------------------------------- RNG states


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Global RNG states of torch (CPU and CUDA), numpy and python as plain tensors/lists."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def _rng_preserved(device: torch.device) -> Iterator[None]:
    """Leave every global RNG as it was (sample inputs must not shift training noise)."""
    state = _rng_state(device)
    try:
        yield
    finally:
        _set_rng_state(state, device)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class _Dist:
    rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _start_distributed(options: TrainOptions) -> _Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(options.device)
    if world <= 1 and not dist.is_initialized():
        return _Dist(0, 1, device, owns_group=False)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return _Dist(dist.get_rank(), dist.get_world_size(), device, owns_group=owns)


class _ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch) that can start mid-epoch.

    ``start`` counts this process's items of the epoch to skip. The epoch's shuffled order
    is the same for any number of processes; process ``r`` of ``n`` reads its items
    ``r, r + n, r + 2n, ...``, so after ``k`` items each, all ``n`` have read the first
    ``k * n`` items of the order.
    """

    start = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(super().__len__() - self.start, 0)

    def skip(self, items: int) -> None:
        """Start after the first ``items`` of the epoch's order, read by all processes.

        Exact when ``items`` divides by the number of processes (always, unless a run
        resumes on another number of processes in mid-epoch; then fewer than that many
        items of the epoch are skipped: every process must start at the same count, or
        they would run different numbers of batches).
        """
        self.start = -(-items // self.num_replicas)


# --------------------------------------------------------------------------- the loop


@dataclass
class _Progress:
    """Where a run is: the last completed ``step``, its ``epoch``, ``items_in_epoch`` (the
    items of the epoch's shuffled order read so far, by all processes together: items, not
    batches, so a resume with another batch size goes on at the next item), and
    ``trained_seconds``, the training time up to the run's saved state over every session
    of the run (the clock of a resumed session starts from it)."""

    step: int = 0
    epoch: int = 0
    items_in_epoch: int = 0
    trained_seconds: float = 0.0


def _save_all(
    run: TrainRun,
    out: Path,
    pos: _Progress,
    schedulers: Mapping[str, LambdaLR],
    options: TrainOptions,
    device: torch.device,
    seconds: float,
) -> None:
    """Write ``model.safetensors`` and ``train_state.pt`` of step ``pos.step``, trained
    for ``seconds`` in all.

    The state is gathered and written to a temporary file first, then the model is
    written and renamed into place, then the state: an error in any of that (a pool that
    cannot be stacked, a full disk) leaves both files of the last save. Only a kill
    between the two renames leaves the model ahead of the state, which :func:`_restore`
    handles (the state is whole on its own).
    """
    state = {
        "kind": run.kind,
        "config": run.config.to_dict(),
        "nets": {k: unwrap(n).state_dict() for k, n in run.nets.items()},
        "step": pos.step,
        "epoch": pos.epoch,
        "items_in_epoch": pos.items_in_epoch,
        "seconds": seconds,
        "optimizers": {k: o.state_dict() for k, o in run.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "pools": {k: p.state_dict() for k, p in run.pools.items()},
        "rng": _rng_state(device),
    }
    with atomic_output(out / STATE_FILE, overwrite=True) as state_tmp:
        save_train_state(state_tmp, state)
        save_checkpoint(
            out / MODEL_FILE,
            kind=run.kind,
            config=run.config,
            nets=run.nets,
            domains=run.domains,
            steps=pos.step,
            data=run.data_summary,
            # the rate the run trains at: the given one, or the resumed run's
            extra={"train_options": {**dataclasses.asdict(options), "lr": _base_lr(schedulers)}},
        )


def _base_lr(schedulers: Mapping[str, LambdaLR]) -> float:
    """The run's learning rate before its schedule's factor."""
    return float(next(iter(schedulers.values())).base_lrs[0])


def _restore(
    run: TrainRun,
    out: Path,
    schedulers: Mapping[str, LambdaLR],
    ctx: _Dist,
    seed: int,
    batch_size: int,
    lr: float | None = None,
) -> _Progress:
    """Load nets, optimisers, schedulers, pools and RNGs from ``train_state.pt``.

    The state holds the nets' weights of its step, so it is whole on its own: a kill
    between writing ``model.safetensors`` and ``train_state.pt`` (the model one step
    ahead) resumes from the state's step and redoes the rest exactly. ``lr`` (not None)
    replaces the run's learning rate from the resumed step on, under the run's schedule.
    A state from before positions counted items counted batches: of ``batch_size`` (this
    session's) per process, exact when the run's was the same.
    """
    state = load_train_state(out / STATE_FILE)
    if state.get("kind") != run.kind:
        raise CheckpointError(
            f"resume: {out / STATE_FILE} is the state of a {state.get('kind')} run, not of "
            f"this {run.kind} run; start over with overwrite=True"
        )
    weights = state["nets"] if "nets" in state else _checkpoint_weights(run, out, state)
    if "config" in state and make_config(run.kind, state["config"]) != run.config:
        raise ConfigError(
            f"resume: {out / STATE_FILE} holds a {run.kind} "
            f"{make_config(run.kind, state['config'])}, not this {run.config}"
        )
    missing = sorted(set(run.nets) - set(weights))
    if missing:
        raise CheckpointError(f"resume: {out / STATE_FILE} lacks the nets {missing}")
    for name, net in run.nets.items():
        net.load_state_dict(weights[name])
    for name, opt in run.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    for name, sched in schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
        if lr is not None:  # a rate given on resume (to fine-tune) replaces the run's
            sched.base_lrs = [lr] * len(sched.base_lrs)
            for group in sched.optimizer.param_groups:
                group["initial_lr"] = lr
        # the optimiser's restored rate is the saved schedule's next one; a run extended
        # (more --steps) has another schedule: its rate for this step, not the old one's
        # (an extended run's first step trained at rate 0 when the old schedule had ended)
        for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
            group["lr"] = base * run.lr_lambda(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]
    for name, pool in run.pools.items():
        pool.load_state_dict(state["pools"][name], device=ctx.device)
    if ctx.world_size == 1:
        _set_rng_state(state["rng"], ctx.device)
    else:  # each rank had its own RNGs; only one set was saved, so re-derive them
        _seed_all(seed + ctx.rank + 7919 * int(state["step"]))
    return _Progress(
        int(state["step"]),
        int(state["epoch"]),
        int(
            state["items_in_epoch"]
            if "items_in_epoch" in state
            else state["batch_in_epoch"] * batch_size * ctx.world_size
        ),
        float(state.get("seconds", 0.0)),  # states before it was saved: from 0
    )


def _checkpoint_weights(
    run: TrainRun, out: Path, state: Mapping[str, Any]
) -> dict[str, Mapping[str, Tensor]]:
    """The weights of a state written before states held them: ``model.safetensors``'s,
    which must be of the same step."""
    model = load_model(out / MODEL_FILE)
    if model.kind != run.kind or model.config != run.config:
        raise ConfigError(
            f"resume: {out / MODEL_FILE} holds a {model.kind} {model.config}, not this "
            f"{run.kind} {run.config}"
        )
    missing = sorted(set(run.nets) - set(model.nets))
    if missing:
        raise CheckpointError(
            f"resume: {out / MODEL_FILE} lacks the nets {missing} (a generators-only file); "
            "resume needs the full checkpoint written by training"
        )
    if state.get("step") != model.steps:
        raise CheckpointError(
            f"resume: {out / MODEL_FILE} (step {model.steps}) and {out / STATE_FILE} (step "
            f"{state.get('step')}) do not belong together; start over with overwrite=True"
        )
    return {name: net.state_dict() for name, net in model.nets.items()}


def _log_step(line: str) -> int | None:
    """The step of one ``log.jsonl`` line; None for a line cut short by a kill."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def _trim_log(out: Path, step: int) -> None:
    """Drop the records of steps after ``step`` (logged before a kill, redone on resume)
    and lines cut short by a kill."""
    path = out / LOG_FILE
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [
        line
        for line in lines
        if line.endswith("\n") and (logged := _log_step(line)) is not None and logged <= step
    ]
    if len(kept) != len(lines):
        with atomic_output(path, overwrite=True) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")


def _prepare_out(out: Path, options: TrainOptions, ctx: _Dist) -> None:
    if not ctx.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    earlier = [out / name for name in (MODEL_FILE, STATE_FILE) if (out / name).exists()]
    if options.resume:
        if not (out / STATE_FILE).exists():
            raise CheckpointError(
                f"cannot resume: {out / STATE_FILE} does not exist (the run stopped before "
                "its first checkpoint was complete); start over with overwrite=True "
                "(--overwrite)"
            )
        return
    if earlier and not options.overwrite:
        raise OutputExistsError(
            f"{out} already holds a training run ({earlier[0].name}); pass resume=True "
            "(--resume) to continue it or overwrite=True (--overwrite) to start over"
        )
    (out / LOG_FILE).unlink(missing_ok=True)


def _log(out: Path, record: Mapping[str, Any]) -> None:
    # a line cut short by a full disk is dropped on resume (see _trim_log)
    with disk_errors_named(out / LOG_FILE), (out / LOG_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def fit(run: TrainRun, out_dir: PathLike, options: TrainOptions | None = None) -> Path:
    """Train ``run`` for ``options.steps`` steps; returns ``out_dir / "model.safetensors"``.

    Writes to ``out_dir`` (rank 0 only): ``model.safetensors`` (all nets, latest),
    ``train_state.pt``, ``log.jsonl`` (one JSON object per ``log_every`` steps: step,
    epoch, lr, seconds of training since the run began (over resumes too), seconds per
    step, the losses) and ``samples/step_XXXXXX.png``.

    A resumed run already at ``options.steps`` trains nothing and writes nothing (a
    warning says so).

    Raises:
        OutputExistsError: ``out_dir`` holds a run and neither resume nor overwrite is set.
        CheckpointError: resume without (or with a mismatched) checkpoint/state.
        ConfigError: resume of a run already past ``options.steps``.
        TrainingInterrupted: on Ctrl-C, after saving checkpoint and state.

    A run that fails (or is stopped) before writing anything removes the folders it
    created, ``out_dir`` included; a folder that holds a file is always kept.
    """
    check_local_output(out_dir, "run folder")
    options = options or TrainOptions()
    trainer = _TRAINERS[run.kind]
    ctx = _start_distributed(options)
    out = Path(out_dir)
    created = _missing_folders(out) if ctx.is_main else []
    try:
        return _fit(run, out, options, trainer, ctx)
    except BaseException:
        _remove_empty_folders(created)
        raise
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty_folders(created: Sequence[Path]) -> None:
    """After a failed run, remove the folders it created (deepest first) while they are
    still empty: a run that failed before writing anything leaves nothing behind. Only
    ``os.rmdir``, so no file is ever deleted."""
    if created:
        with contextlib.suppress(OSError):
            (created[0] / SAMPLES_DIR).rmdir()
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # holds a file (a log, a checkpoint): kept, and so are its parents
            return


class _StopRequest:
    """Ctrl-C or SIGTERM during training: the first one lets the current step finish, then
    the loop saves and stops; a second one interrupts at once (nothing more is saved)."""

    def __init__(self) -> None:
        self.requested = False
        self.immediate = False
        self.signum: int = signal.SIGINT

    def handler(self, signum: int, frame: Any) -> None:
        self.signum = signum  # the last one decides the exit code (130 or 143)
        if self.requested:
            self.immediate = True
            raise KeyboardInterrupt
        self.requested = True

    def agreed(self, ctx: _Dist) -> bool:
        """Whether to stop now; under DDP every rank stops at the same step."""
        if ctx.world_size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[_StopRequest]:
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers only work in the main thread: Ctrl-C acts at once
        return
    # SIGTERM too: a batch scheduler (Slurm, Kubernetes) asks to stop so, torchrun passes it
    # to its workers, and the job then leaves a checkpoint to resume from
    previous = {sig: signal.signal(sig, stop.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """``worker_init_fn`` of the training DataLoader: its worker processes ignore Ctrl-C
    and SIGTERM.

    A terminal's Ctrl-C and a scheduler's SIGTERM (Slurm's ``scancel``, ``kill -TERM`` of
    the process group) reach the workers too. A worker killed by SIGTERM made torch raise
    "DataLoader worker ... is killed by signal" in the middle of the training step, which
    lost the checkpoint the signal should have saved; a worker that stopped on Ctrl-C
    failed the next batch. The training process alone decides to stop (after its step,
    saving first) and then shuts the workers down; a worker whose training process is
    gone ends on its own (torch's watchdog).
    """
    del worker_id
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def _make_loader(
    run: TrainRun, options: TrainOptions, ctx: _Dist, batch_size: int
) -> tuple[DataLoader, _ResumableSampler, torch.Generator]:
    sampler = _ResumableSampler(
        run.dataset,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=options.seed,
        drop_last=True,
    )
    if len(sampler) // batch_size == 0:
        raise ConfigError(
            f"the data hold {len(run.dataset)} items, "  # type: ignore[arg-type]
            f"fewer than one batch of "
            f"{batch_size} per process ({ctx.world_size} process(es)); lower the batch size "
            "or add data"
        )
    loader_rng = torch.Generator()  # its own: the loader never draws from the global RNG
    loader = DataLoader(
        run.dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=options.num_workers,
        drop_last=True,
        pin_memory=ctx.device.type == "cuda",
        generator=loader_rng,
        worker_init_fn=_leave_stop_signals_to_the_trainer,
    )
    return loader, sampler, loader_rng


class _Logger:
    """Appends losses to ``log.jsonl`` and shows them on the progress bar (rank 0).

    Its clock starts at ``pos.trained_seconds``, the training time of the run's earlier
    sessions.
    """

    def __init__(self, out: Path, bar: Any, pos: _Progress) -> None:
        self.out, self.bar = out, bar
        self.started = self.last_time = time.perf_counter()
        self.last_step = pos.step
        self.earlier = pos.trained_seconds

    def elapsed(self, now: float | None = None) -> float:
        """Training seconds of the run so far, earlier sessions included."""
        return self.earlier + (time.perf_counter() if now is None else now) - self.started

    def __call__(self, pos: _Progress, lr: float, losses: Mapping[str, float]) -> None:
        now = time.perf_counter()
        record = {
            "step": pos.step,
            "epoch": pos.epoch,
            "lr": lr,
            "seconds": round(self.elapsed(now), 3),
            "step_seconds": round((now - self.last_time) / (pos.step - self.last_step), 4),
            **losses,
        }
        _log(self.out, record)
        self.last_time, self.last_step = now, pos.step
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)


def _nothing_to_train(out: Path, done: int, steps: int, ctx: _Dist) -> None:
    """A resumed run already at ``steps`` (a warning: the run is as asked) or past it (an
    error: ``steps`` is the total to reach, and a user who meant "more steps" gets none)."""
    fix = f"steps is the total to reach, so pass more than {done} (--steps) to train on"
    if done > steps:
        raise ConfigError(
            f"resume: the run in {out} is already at step {done}, past steps={steps}; {fix}"
        )
    if ctx.is_main:
        warnings.warn(
            f"resume: the run in {out} is already at step {done} of steps={steps}: nothing "
            f"to train, nothing written; {fix}",
            stacklevel=_outside_stacklevel(),
        )


def _fit(run: TrainRun, out: Path, options: TrainOptions, trainer: _Trainer, ctx: _Dist) -> Path:
    device = ctx.device
    precision = resolve_precision(options.precision, device)
    _prepare_out(out, options, ctx)
    if ctx.world_size > 1:
        dist.barrier()
    for net in run.nets.values():
        net.to(device).train()
    schedulers = {k: LambdaLR(o, run.lr_lambda) for k, o in run.optimizers.items()}
    with _rng_preserved(device):
        n_samples = options.n_samples or trainer.default_samples
        sample_inputs = trainer.sample_inputs(run, n_samples, options.seed)
    shown = {name: _shown(domain) for name, domain in run.domains.items()}
    _seed_all(options.seed + ctx.rank)
    for k, pool in run.pools.items():
        if ctx.rank:
            pool.generator.manual_seed(options.seed + 1000 * ctx.rank + len(k))
    batch_size = options.batch_size or trainer.default_batch
    pos = (
        _restore(run, out, schedulers, ctx, options.seed, batch_size, options.lr)
        if options.resume
        else _Progress()
    )
    if pos.step >= options.steps:
        _nothing_to_train(out, pos.step, options.steps, ctx)
        return out / MODEL_FILE
    if options.resume and ctx.is_main:
        _trim_log(out, pos.step)
    nets: dict[str, nn.Module] = dict(run.nets)
    if ctx.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        nets = {k: DistributedDataParallel(n, device_ids=ids) for k, n in nets.items()}
    loader, sampler, loader_rng = _make_loader(run, options, ctx, batch_size)

    bar = tqdm(
        total=options.steps,
        initial=pos.step,
        desc=f"train {run.kind}",
        unit="step",
        disable=not (options.progress and ctx.is_main),
        dynamic_ncols=True,
    )
    log = _Logger(out, bar, pos)

    def save() -> None:
        if ctx.is_main:
            _save_all(run, out, pos, schedulers, options, device, log.elapsed())

    with _deferred_interrupt() as stop:
        try:
            while pos.step < options.steps:
                sampler.set_epoch(pos.epoch)
                sampler.skip(pos.items_in_epoch)
                loader_rng.manual_seed(options.seed + pos.epoch)
                if hasattr(run.dataset, "set_epoch"):  # random chips / pairing of the epoch
                    run.dataset.set_epoch(pos.epoch)
                for batch in loader:
                    lr = run.optimizers["G"].param_groups[0]["lr"]  # this step's
                    losses = trainer.step(
                        nets,
                        run.optimizers,
                        batch,
                        run.pools,
                        run.config,
                        device=device,
                        precision=precision,
                    )
                    for sched in schedulers.values():
                        sched.step()
                    pos.step += 1
                    pos.items_in_epoch += batch_size * ctx.world_size
                    bar.update(1)
                    if ctx.is_main and (
                        pos.step % options.log_every == 0 or pos.step == options.steps
                    ):
                        log(pos, lr, losses)
                    if (
                        ctx.is_main
                        and options.sample_every
                        and pos.step % options.sample_every == 0
                    ):
                        path = out / SAMPLES_DIR / f"step_{pos.step:06d}.png"
                        trainer.samples(nets, sample_inputs, path, device, precision, shown)
                    if options.checkpoint_every and pos.step % options.checkpoint_every == 0:
                        save()
                    if stop.agreed(ctx):
                        raise KeyboardInterrupt
                    if pos.step >= options.steps:
                        break
                else:
                    pos.epoch += 1
                    pos.items_in_epoch = 0
            save()
        except KeyboardInterrupt:
            saved = cut_short = False
            if not stop.immediate:
                try:
                    save()
                    saved = True
                except KeyboardInterrupt:
                    # a second signal while saving: the atomic writes leave the last
                    # complete save (or a model one step ahead of its state, which a
                    # resume handles, see _save_all)
                    cut_short = True
            raise TrainingInterrupted(
                pos.step, out, saved=saved, signum=stop.signum, saving=cut_short
            ) from None
        finally:
            bar.close()
    if ctx.world_size > 1:  # batch-norm running stats are per rank until synchronised
        for net in run.nets.values():
            for buf in net.buffers():
                dist.broadcast(buf, src=0)
        dist.barrier()
    return out / MODEL_FILE


def train_cyclegan(
    domain_a: Any,
    domain_b: Any,
    out_dir: PathLike,
    *,
    config: CycleGANConfig | Mapping[str, Any] | None = None,
    options: TrainOptions | None = None,
    tile: int | None = None,
    bands_a: Sequence[int] | None = None,
    bands_b: Sequence[int] | None = None,
    max_nodata: float | None = 0.5,
) -> Path:
    """Train a CycleGAN between two unpaired domains; returns the checkpoint path.

    Args:
        domain_a, domain_b: raster paths, folders or chip index files, or Datasets (see
            :func:`prepare_cyclegan`).
        out_dir: the run folder (``model.safetensors``, ``train_state.pt``, ``log.jsonl``,
            ``samples/``).
        config: the architecture (None: defaults with the data's band counts; when
            resuming: the checkpoint's).
        options: steps, batch size, device, precision, seed, resume, ...
        tile: chip size in pixels (None: 256, or the resumed run's; resuming with another
            raises ConfigError).
        bands_a, bands_b: 1-based bands of each domain (None: all).
        max_nodata: leave out chips with more nodata than this fraction.
    """
    check_local_output(out_dir, "run folder")  # before any data is read
    options = options or TrainOptions()
    stored = _stored_model(out_dir, options)
    run = prepare_cyclegan(
        domain_a,
        domain_b,
        config=config,
        options=options,
        tile=tile,
        bands_a=bands_a,
        bands_b=bands_b,
        max_nodata=max_nodata,
        stored=stored,
    )
    return fit(run, out_dir, options)


def train_dcgan(
    source: Any,
    out_dir: PathLike,
    *,
    config: DCGANConfig | Mapping[str, Any] | None = None,
    options: TrainOptions | None = None,
    bands: Sequence[int] | None = None,
) -> Path:
    """Train a DCGAN on chips of ``source``; returns the checkpoint path.

    Args:
        source: raster paths, a folder of images, a chip index, or a Dataset.
        out_dir: the run folder.
        config: the architecture (None: 64 px, the data's band count).
        options: steps, batch size (default 64), device, precision, seed, resume, ...
        bands: 1-based bands to read (None: all).
    """
    check_local_output(out_dir, "run folder")  # before any data is read
    options = options or TrainOptions()
    stored = _stored_model(out_dir, options)
    run = prepare_dcgan(source, config=config, options=options, bands=bands, stored=stored)
    return fit(run, out_dir, options)


# --------------------------------------------------------------------------- generation


def _colour_interpretation(info: DomainInfo) -> list[Any] | None:
    """The recorded colour interpretation of a domain's bands as rasterio ColorInterp
    members; None when none is recorded or a name is unknown to this rasterio."""
    from rasterio.enums import ColorInterp

    names = info.colorinterp or ()
    if not names or any(name not in ColorInterp.__members__ for name in names):
        return None
    return [ColorInterp[name] for name in names]


def generate(
    model: PathLike | LoadedModel,
    n: int,
    out_dir: PathLike,
    *,
    template: PathLike | None = None,
    seed: int = 0,
    overwrite: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    progress: bool = True,
) -> list[Path]:
    """Write ``n`` DCGAN samples as GeoTIFF chips and a PNG grid into ``out_dir``.

    Samples are generated and written ``batch_size`` at a time, so only their latent
    vectors (``nz`` floats each) are held for all ``n``; ``grid.png`` shows the first
    :data:`GRID_SAMPLES` of them. The same seed gives the same samples whatever
    ``batch_size``.

    Chips are denormalised with the checkpoint's Normalizer into the source dtype (float32
    model values in [-1, 1] if the checkpoint has none) and get the band descriptions and
    colour interpretation the checkpoint records. With ``template``, each chip gets
    the template raster's CRS and geotransform (its pixel size and orientation, anchored
    at the corner of its pixel (0, 0)); without, chips have no georeference.

    Args:
        model: a dcgan checkpoint (path or loaded).
        n: number of samples.
        out_dir: folder to create (``sample_0000.tif``, ..., ``grid.png``).
        template: a raster whose CRS and geotransform the chips take.
        seed: seeds the latent vectors.
        overwrite: replace an existing ``out_dir``.
        batch_size: samples generated at once.
        device: "auto", "cpu", "cuda".
        progress: show a tqdm progress bar of the samples written.

    Returns:
        The GeoTIFF paths (the grid is ``out_dir / "grid.png"``).

    Raises:
        ConfigError: not a DCGAN checkpoint, or n < 1.
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False.
        RasterWriteError: ``out_dir`` holds the checkpoint or the template.
    """
    import rasterio
    from affine import Affine

    from rsgan.io import atomic_output_dir, describe, write_png_grid

    if n < 1:
        raise ConfigError(f"n={n}: ask for at least one sample")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: pass a positive number of samples")
    check_local_output(out_dir, "output folder")
    dev = resolve_device(device)
    loaded = load_model(model, device=dev)
    if loaded.kind != "dcgan":
        raise ConfigError(
            f"generate needs a dcgan checkpoint; {loaded.path or 'this model'} is a "
            f"{loaded.kind} (use `rsgan translate` for it)"
        )
    g = loaded.generator()
    info = loaded.out_domain()
    shown = _shown(info)
    dtype = info.dtype if info.normalizer is not None else "float32"
    colorinterp = _colour_interpretation(info)
    crs, transform = None, Affine.identity()
    if template is not None:
        tpl = describe(template)
        # the template's own geotransform: its pixel size, orientation (a south-up or
        # rotated grid stays one) and pixel (0, 0) corner
        crs, transform = tpl.crs, tpl.transform
    # all latents first (nz floats a sample): the samples do not depend on batch_size
    latents = torch.randn(n, loaded.config.nz, generator=torch.Generator().manual_seed(seed))
    size = loaded.config.image_size
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": loaded.config.channels,
        "dtype": dtype,
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
    }
    paths: list[Path] = []
    shown_samples: list[np.ndarray] = []
    inputs = [p for p in (loaded.path, template) if p is not None]
    with (
        atomic_output_dir(out_dir, overwrite=overwrite, inputs=inputs) as tmp,
        warnings.catch_warnings(),
        tqdm(total=n, desc="generate", unit="sample", disable=not progress) as bar,
    ):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for z in latents.split(batch_size):
            with torch.no_grad():
                batch = g(z.to(dev)).float().cpu()  # (b, C, H, W) in [-1, 1]
            for image in batch:
                if len(shown_samples) < GRID_SAMPLES:
                    shown_samples.append(_to_uint8(image, shown))
                values = image.numpy()
                if info.normalizer is not None:
                    values = info.normalizer.denormalize(values)
                name = f"sample_{len(paths):04d}.tif"
                with rasterio.open(tmp / name, "w", **profile) as dst:
                    if colorinterp:  # before the pixels: libtiff cannot change it afterwards
                        dst.colorinterp = colorinterp
                    dst.write(values.astype(dtype))
                    for b, text in enumerate(info.descriptions or (), start=1):
                        if text:
                            dst.set_band_description(b, text)
                paths.append(Path(out_dir) / name)
            bar.update(len(batch))
        write_png_grid(
            shown_samples, tmp / "grid.png", ncols=max(1, math.isqrt(len(shown_samples)))
        )
    return paths


__all__ = [
    "TrainOptions",
    "TrainRun",
    "TrainingInterrupted",
    "cyclegan_train_step",
    "dcgan_train_step",
    "fit",
    "generate",
    "linear_decay",
    "prepare_cyclegan",
    "prepare_dcgan",
    "train_cyclegan",
    "train_dcgan",
]
