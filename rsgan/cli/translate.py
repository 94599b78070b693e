"""`rsgan translate`: translate a whole scene with a generator, seam-free."""

from __future__ import annotations

import time
from pathlib import Path

import click

from rsgan.cli._options import BANDS
from rsgan.mosaic import BLENDS
from rsgan.pipelines.translate import COMPRESSIONS, NORM_MODES, translate_raster


@click.command("translate", short_help="Translate a whole scene with a generator.")
# SRC as given: a URL or /vsi path would lose the "//" of its scheme to pathlib
@click.argument("src", type=click.Path(dir_okay=False))
# DST as given too: "s3://b/o.tif" through pathlib became "s3:/b/o.tif", refused as a
# missing local folder instead of as a URL
@click.argument("dst", type=click.Path())
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Checkpoint (.safetensors); default $RSGAN_MODEL, else the bundled model.",
)
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True)
@click.option("--tile", default=768, show_default=True, type=int, help="Largest tile side, px.")
@click.option("--overlap", default=64, show_default=True, type=int, help="Least tile overlap, px.")
@click.option("--blend", type=click.Choice(list(BLENDS)), default="hann", show_default=True)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(1),
    help="Tiles per forward (default 1 on CPU, 4 on CUDA).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--bands", type=BANDS, default=None, help="1-based bands, e.g. 1,2,3 (default all).")
@click.option(
    "--norm",
    type=click.Choice(list(NORM_MODES)),
    default="scene",
    show_default=True,
    help="scene: seam-free scene statistics; tile: per-tile statistics (shows seams).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default=None,
    help=(
        "Default: the model's preference where the device has native bf16 (else fp32); "
        "without one, bf16 on a CUDA GPU with native bf16, else fp32."
    ),
)
@click.option(
    "--dtype",
    default=None,
    help="Output data type, e.g. float32 [default: that of the domain the model writes, "
    "else the source's].",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing DST.")
@click.option("--cog", is_flag=True, help="Write a Cloud Optimized GeoTIFF with overviews.")
@click.option(
    "--compress",
    type=click.Choice(list(COMPRESSIONS)),
    default="zstd",
    show_default=True,
    help="Output compression (deflate for readers without ZSTD).",
)
@click.option(
    "--quicklook",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG preview of the output.",
)
@click.option(
    "--stats-memory-mb",
    default=None,
    type=click.FloatRange(min=1),
    help="Memory for the scene-statistics pass, MiB (default 1536): a scene that fits is "
    "translated in one pass; a larger one pools statistics over as many tiles as fit.",
)
@click.option(
    "--nodata",
    type=float,
    default=None,
    help="Read SRC as if its nodata value were this (gdal_translate -a_nodata), e.g. 0 for "
    "an empty collar without a nodata value; it stays nodata in DST.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def translate(
    src: str,
    dst: str,
    model: Path | None,
    direction: str,
    tile: int,
    overlap: int,
    blend: str,
    batch_size: int | None,
    device: str,
    bands: tuple[int, ...] | None,
    norm: str,
    precision: str | None,
    dtype: str | None,
    overwrite: bool,
    cog: bool,
    compress: str,
    quicklook: Path | None,
    stats_memory_mb: float | None,
    nodata: float | None,
    quiet: bool,
) -> None:
    """Translate SRC into DST (GeoTIFF on the same grid) with a CycleGAN generator.

    SRC is a local raster, or a URL (https://, s3://...) or GDAL /vsi path; DST is a
    local file. Ctrl-C or SIGTERM stops it and leaves nothing at DST (exit 130 / 143).

    \b
    Example:
      rsgan translate pre.tif post_style.tif --model model.safetensors --cog
    """
    started = time.perf_counter()
    out = translate_raster(
        src,
        dst,
        model,
        direction=direction,
        tile=tile,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        device=device,
        bands=bands,
        overwrite=overwrite,
        cog=cog,
        compress=compress,
        progress=not quiet,
        norm=norm,
        dtype=dtype,
        precision=precision,
        quicklook=quicklook,
        stats_memory_mb=stats_memory_mb,
        nodata=nodata,
    )
    seconds = time.perf_counter() - started
    if not quiet:
        click.echo(f"wrote {out} in {seconds:.1f} s")
        if quicklook is not None:
            click.echo(f"quicklook: {quicklook}")


commands: list[click.Command] = [translate]
