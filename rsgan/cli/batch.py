"""`rsgan batch`: translate every scene of a catalog, on Dask, safe to rerun."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rsgan.cli._exit import ExitCode
from rsgan.cli._options import BANDS

_TRANSLATION_OPTIONS = (
    click.option(
        "--model",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Checkpoint (.safetensors); default: $RSGAN_MODEL or the bundled model.",
    ),
    click.option(
        "--direction",
        type=click.Choice(["a2b", "b2a"]),
        default="a2b",
        show_default=True,
        help="Which generator of a CycleGAN checkpoint to use.",
    ),
    click.option("--tile", type=int, default=None, help="Largest tile side, pixels."),
    click.option("--overlap", type=int, default=None, help="Overlap between tiles, pixels."),
    click.option("--device", default=None, help="auto, cpu, cuda or cuda:N (default auto)."),
)


def translation_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options ``batch`` and ``augment`` share (model, direction, tile, overlap,
    device); options left unset keep translate_raster's defaults (see :func:`given`)."""
    for option in reversed(_TRANSLATION_OPTIONS):
        command = option(command)
    return command


def given(**options: Any) -> dict[str, Any]:
    """The options the user set (None means: keep the library default)."""
    return {key: value for key, value in options.items() if value is not None}


_EXIT_CODES = """\b
Exit codes:
  0    every scene done (translated, or skipped as done before)
  1    error: the run could not be done (catalog, model, OUT_DIR,
       cluster); the Error line says why
  2    usage error (a bad option or argument)
  3    the run finished, but some scenes failed: they are listed and
       in the manifest; rerun the same command to retry only them
  130  Ctrl-C, 143 SIGTERM: rerun to go on"""


@click.command(
    "batch",
    short_help="Translate every scene of a catalog (Dask; rerunnable).",
    epilog=_EXIT_CODES,
)
@click.argument("catalog")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@translation_options
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Local worker processes (default: one per CPU core or GPU; 0: no Dask).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDR",
    help="Use a running Dask scheduler, e.g. tcp://host:8786.",
)
@click.option(
    "--asset-key", default=None, help="STAC asset to translate (default: the only raster asset)."
)
@click.option(
    "--path-column",
    default="path",
    show_default=True,
    help="Column of raster paths in a vector or CSV catalog.",
)
@click.option("--bands", type=BANDS, default=None, help="1-based bands, e.g. 1,2,3 (default all).")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default=None,
    help="Inference precision (default: the model's preference).",
)
@click.option("--cog", is_flag=True, help="Write Cloud Optimized GeoTIFFs.")
@click.option(
    "--compress",
    type=click.Choice(["zstd", "deflate", "lzw", "none"]),
    default=None,
    help="Output compression (default zstd; deflate for readers without ZSTD).",
)
@click.option(
    "--nodata",
    type=float,
    default=None,
    help="Read the scenes as if their nodata value were this (for empty collars without "
    "a nodata value).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Times a scene is restarted after its worker died.",
)
@click.option("--overwrite", is_flag=True, help="Redo every scene, replacing existing outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def batch(
    catalog: str,
    out_dir: Path,
    model: Path | None,
    direction: str,
    tile: int | None,
    overlap: int | None,
    device: str | None,
    workers: int | None,
    scheduler: str | None,
    asset_key: str | None,
    path_column: str,
    bands: tuple[int, ...] | None,
    precision: str | None,
    cog: bool,
    compress: str | None,
    nodata: float | None,
    retries: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Translate every scene of CATALOG into OUT_DIR.

    CATALOG is a vector file (GeoPackage, GeoJSON, GeoParquet) or CSV with a column of
    raster paths, a folder of rasters, a quoted glob such as 'scenes/*.tif', or a STAC
    ItemCollection/Catalog JSON. Each scene gives OUT_DIR/<name>_translated.tif and a STAC
    Item next to it; OUT_DIR/manifest.parquet records every scene. Rerunning skips the
    scenes already done. The exit code tells a finished run with failed scenes (3) from
    one that could not be done (1); see the list below.

    \b
    Examples:
      rsgan batch 'pre/*.tif' out/ --model model.safetensors
      rsgan batch items.json out/ --asset-key visual --scheduler tcp://10.0.0.5:8786
    """
    from rsgan.pipelines.catalog import MANIFEST_NAME, summary_table, translate_catalog

    options = given(
        tile=tile,
        overlap=overlap,
        bands=bands,
        device=device,
        precision=precision,
        compress=compress,
        nodata=nodata,
    )
    manifest = translate_catalog(
        catalog,
        out_dir,
        model,
        asset_key=asset_key,
        path_column=path_column,
        workers=workers,
        scheduler=scheduler,
        overwrite=overwrite,
        retries=retries,
        progress=not quiet,
        direction=direction,
        cog=cog,
        **options,
    )
    click.echo(summary_table(manifest))
    click.echo(f"manifest: {out_dir / MANIFEST_NAME}")
    status = manifest["status"]
    failed = int((status == "failed").sum())
    if failed:
        click.echo(
            f"{failed} of {len(manifest)} scenes failed (exit code {ExitCode.SOME_FAILED:d}); "
            "rerun the same command to retry them: the scenes done are skipped",
            err=True,
        )
        sys.exit(ExitCode.SOME_FAILED)
    done, skipped = int((status == "done").sum()), int((status == "skipped").sum())
    click.echo(
        f"all {len(manifest)} scenes done ({done} translated, {skipped} skipped as done before)"
    )


commands: list[click.Command] = [batch]
