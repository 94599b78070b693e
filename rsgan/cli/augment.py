"""`rsgan augment`: translate labelled images and keep their masks (domain adaptation)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rsgan.cli._exit import ExitCode
from rsgan.cli._options import BANDS
from rsgan.cli.batch import given, translation_options


@click.command("augment", short_help="Translate labelled images, keeping their masks.")
@click.option(
    "--images",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder of source images (GeoTIFFs or image chips).",
)
@click.option(
    "--masks",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Folder of masks, matched to the images by file name stem.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: images/, masks/ and index.csv.",
)
@translation_options
@click.option(
    "--bands",
    type=BANDS,
    default=None,
    help="1-based bands to translate, e.g. 3,2,1 (default all); the index's original "
    "samples read the same bands.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def augment(
    images: Path,
    masks: Path,
    out_dir: Path,
    model: Path | None,
    direction: str,
    tile: int | None,
    overlap: int | None,
    device: str | None,
    bands: tuple[int, ...] | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Translate the images of --images into the target domain and copy each mask of
    --masks, pixel for pixel, onto its translated image's grid.

    Writes OUT/images/<stem>.tif, OUT/masks/<stem>.tif and OUT/index.csv (original and
    translated pairs), ready for rsgan.pipelines.augment.MixedSegmentationDataset. Pairs
    that fail (no partner, different grids) are listed and the exit code is 3; the other
    pairs are written. Exit codes: 0 all pairs written; 1 an error, nothing written (the
    Error line says why); 2 a usage error; 3 finished, but some pairs failed (fix them and
    rerun with --overwrite).

    \b
    Example:
      rsgan augment --images chips/img --masks chips/mask --model m.safetensors --out aug/
    """
    from rsgan.pipelines.augment import INDEX_NAME, AugmentError, augment_segmentation_dataset

    try:
        index = augment_segmentation_dataset(
            images,
            masks,
            model,
            out_dir,
            direction=direction,
            overwrite=overwrite,
            progress=not quiet,
            **given(tile=tile, overlap=overlap, device=device, bands=bands),
        )
    except AugmentError as exc:  # finished: the good pairs are written and indexed
        click.echo(str(exc), err=True)
        click.echo(
            f"{len(exc.failures)} pair(s) failed (exit code {ExitCode.SOME_FAILED:d}); fix "
            "them and rerun with --overwrite",
            err=True,
        )
        sys.exit(ExitCode.SOME_FAILED)
    click.echo(f"{int(index['translated'].sum())} translated pairs; index: {out_dir / INDEX_NAME}")


commands: list[click.Command] = [augment]
