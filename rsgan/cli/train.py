"""`rsgan train dcgan|cyclegan`: parse options, call :mod:`rsgan.training`."""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rsgan.cli._exit import ExitCode
from rsgan.cli._options import BANDS, other_rank

_PRECISIONS = click.Choice(["fp32", "bf16"])


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by both trainers (they become a TrainOptions)."""
    options = [
        click.option(
            "--out",
            "out_dir",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Run folder: model, state, log, samples.",
        ),
        click.option(
            "--steps",
            type=click.IntRange(1),
            default=10_000,
            show_default=True,
            help="Total training steps (a resumed run continues up to this, not this many more).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(1),
            default=None,
            help="Samples per step [default: 1 for cyclegan, 64 for dcgan].",
        ),
        click.option(
            "--lr",
            type=float,
            default=None,
            help="Adam learning rate [default: 2e-4, or the resumed run's; a rate given "
            "with --resume replaces the run's from the resumed step on].",
        ),
        click.option(
            "--decay-from",
            type=click.IntRange(0),
            default=None,
            help="Step where the learning rate starts its linear decay to 0 "
            "[default: steps/2 for cyclegan, none for dcgan].",
        ),
        click.option(
            "--sample-every",
            type=click.IntRange(0),
            default=500,
            show_default=True,
            help="Write a sample grid every N steps (0: never).",
        ),
        click.option(
            "--checkpoint-every",
            type=click.IntRange(0),
            default=1000,
            show_default=True,
            help="Save checkpoint and state every N steps.",
        ),
        click.option(
            "--log-every",
            type=click.IntRange(1),
            default=10,
            show_default=True,
            help="Append losses to log.jsonl every N steps.",
        ),
        click.option(
            "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
        ),
        click.option(
            "--precision",
            type=_PRECISIONS,
            default=None,
            help="fp32 or bf16 autocast [default: bf16 on CUDA GPUs with native bf16, else fp32].",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
        click.option(
            "--workers",
            "num_workers",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="DataLoader worker processes.",
        ),
        click.option("--resume", is_flag=True, help="Continue the run in --out exactly."),
        click.option("--overwrite", is_flag=True, help="Start over in a used --out folder."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _train_options(kwargs: dict[str, Any]) -> Any:
    from rsgan.training import TrainOptions

    quiet = kwargs.pop("quiet")
    return TrainOptions(progress=not quiet, **kwargs)


def _given(**fields: Any) -> dict[str, Any]:
    """Architecture fields the user set (the rest come from the data or the checkpoint)."""
    return {k: v for k, v in fields.items() if v is not None}


def _call(train: Callable[..., Path], *args: Any, **kwargs: Any) -> None:
    from rsgan.training import TrainingInterrupted

    try:
        with warnings.catch_warnings():
            if other_rank():  # under torchrun rank 0 warns for the run: each line once
                warnings.simplefilter("ignore")
            path = train(*args, **kwargs)
    except TrainingInterrupted as exc:
        if not other_rank():  # under torchrun rank 0 says it for the run
            click.echo(f"\n{exc}", err=True)
        sys.exit(ExitCode.TERMINATED if exc.signum == signal.SIGTERM else ExitCode.INTERRUPTED)
    if not other_rank():
        click.echo(f"checkpoint: {path}")


@click.group("train", short_help="Train a DCGAN or a CycleGAN.")
def train() -> None:
    """Train a model; see `rsgan train dcgan -h` and `rsgan train cyclegan -h`.

    A run folder gets model.safetensors (latest weights with metadata), train_state.pt (for
    --resume), log.jsonl (losses) and samples/step_XXXXXX.png. Ctrl-C (or SIGTERM) saves both files
    and stops; the same command with --resume continues. Under torchrun the run is data
    parallel (DDP).
    """


@train.command("dcgan", short_help="Train a DCGAN on scene chips.")
# as given: a URL or /vsi path would lose the "//" of its scheme to pathlib
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.option(
    "--size",
    type=click.Choice(["64", "128", "256"]),
    default=None,
    help="Image size in px [default: 64, or the resumed run's].",
)
@click.option("--nz", type=click.IntRange(1), default=None, help="Latent size [default: 100].")
@click.option("--ngf", type=click.IntRange(1), default=None, help="Generator width [64].")
@click.option("--ndf", type=click.IntRange(1), default=None, help="Discriminator width [64].")
@click.option("--bands", type=BANDS, default=None, help="1-based bands, e.g. 1,2,3 (all).")
@_run_options
def dcgan(
    sources: tuple[str, ...],
    size: str | None,
    nz: int | None,
    ngf: int | None,
    ndf: int | None,
    bands: tuple[int, ...] | None,
    out_dir: Path,
    **kwargs: Any,
) -> None:
    """Train a DCGAN on chips of SOURCES (rasters, folders of images or a chip index).

    \b
    Example:
      rsgan train dcgan ../shared/data/ucmerced_agricultural --out runs/farm --steps 3000
    """
    from rsgan.training import train_dcgan

    config = _given(image_size=int(size) if size else None, nz=nz, ngf=ngf, ndf=ndf)
    source = list(sources) if len(sources) > 1 else sources[0]
    _call(train_dcgan, source, out_dir, config=config, options=_train_options(kwargs), bands=bands)


@train.command("cyclegan", short_help="Train a CycleGAN between two domains.")
@click.option(
    "--domain-a",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Rasters (files or URLs), folders or a chip index of domain A (repeatable).",
)
@click.option(
    "--domain-b",
    multiple=True,
    required=True,
    type=click.Path(),
    help="Rasters (files or URLs), folders or a chip index of domain B (repeatable).",
)
@click.option(
    "--tile",
    type=click.IntRange(24),
    default=None,
    help="Chip size in px, a multiple of 4 [default: 256, or the resumed run's].",
)
@click.option("--bands-a", type=BANDS, default=None, help="1-based bands of A (all).")
@click.option("--bands-b", type=BANDS, default=None, help="1-based bands of B (all).")
@click.option(
    "--max-nodata",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Skip chips with more nodata than this fraction.",
)
@click.option("--ngf", type=click.IntRange(1), default=None, help="Generator width [64].")
@click.option("--ndf", type=click.IntRange(1), default=None, help="Discriminator width [64].")
@click.option(
    "--n-blocks", type=click.IntRange(1), default=None, help="Residual blocks per generator [9]."
)
@click.option(
    "--lambda-cycle", type=click.FloatRange(0), default=None, help="Cycle loss weight [10]."
)
@click.option(
    "--lambda-identity",
    type=click.FloatRange(0),
    default=None,
    help="Identity loss weight as a fraction of the cycle weight [0.5].",
)
@click.option("--pool-size", type=click.IntRange(0), default=None, help="Pool of past fakes [50].")
@click.option(
    "--upsample",
    type=click.Choice(["deconv", "blur", "resize"]),
    default=None,
    help="Generator upsampling: transposed convs (the paper; a 2-4 px checkerboard "
    "texture), the same with a binomial low-pass after each (blur: no 2 px pattern) or "
    "nearest 2x + conv (resize: slower) [deconv].",
)
@click.option(
    "--lambda-periodic",
    type=click.FloatRange(0),
    default=None,
    help="Weight of a loss against the dot pattern of the generators' 4 px stride grid: "
    "the power their outputs add at its frequencies [0: off].",
)
@_run_options
def cyclegan(
    domain_a: tuple[str, ...],
    domain_b: tuple[str, ...],
    tile: int | None,
    bands_a: tuple[int, ...] | None,
    bands_b: tuple[int, ...] | None,
    max_nodata: float,
    ngf: int | None,
    ndf: int | None,
    n_blocks: int | None,
    lambda_cycle: float | None,
    lambda_identity: float | None,
    pool_size: int | None,
    upsample: str | None,
    lambda_periodic: float | None,
    out_dir: Path,
    **kwargs: Any,
) -> None:
    """Train a CycleGAN between unpaired domains A and B (any band counts).

    \b
    Example:
      rsgan train cyclegan --domain-a pre/ --domain-b post/ --tile 128 --out runs/joplin
    """
    from rsgan.training import train_cyclegan

    config = _given(
        ngf=ngf,
        ndf=ndf,
        n_blocks=n_blocks,
        lambda_cycle=lambda_cycle,
        lambda_identity=lambda_identity,
        pool_size=pool_size,
        upsample=upsample,
        lambda_periodic=lambda_periodic,
    )

    def one_or_list(paths: tuple[str, ...]) -> Any:
        return list(paths) if len(paths) > 1 else paths[0]

    _call(
        train_cyclegan,
        one_or_list(domain_a),
        one_or_list(domain_b),
        out_dir,
        config=config,
        options=_train_options(kwargs),
        tile=tile,
        bands_a=bands_a,
        bands_b=bands_b,
        max_nodata=max_nodata,
    )


commands: list[click.Command] = [train]
