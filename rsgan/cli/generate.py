"""`rsgan generate`: DCGAN samples as GeoTIFF chips plus a PNG grid."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("generate", short_help="Generate scenes with a DCGAN checkpoint.")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--n", "n", type=click.IntRange(1), default=64, show_default=True, help="Number of samples."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (must not exist unless --overwrite).",
)
@click.option(
    "--template",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Raster whose CRS and geotransform (pixel size, orientation, corner) the chips take.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latents.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def generate(
    checkpoint: Path,
    n: int,
    out_dir: Path,
    template: Path | None,
    seed: int,
    device: str,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write N samples of the DCGAN CHECKPOINT to OUT as GeoTIFFs in the training data's
    dtype (sample_0000.tif, ...) and OUT/grid.png (the first 64 samples).

    \b
    Example:
      rsgan generate runs/farm/model.safetensors --n 64 --out farm_samples
    """
    from rsgan.training import generate as run_generate

    paths = run_generate(
        checkpoint,
        n,
        out_dir,
        template=template,
        seed=seed,
        overwrite=overwrite,
        device=device,
        progress=not quiet,
    )
    click.echo(f"wrote {len(paths)} GeoTIFF sample(s) and {out_dir / 'grid.png'}")


commands: list[click.Command] = [generate]
