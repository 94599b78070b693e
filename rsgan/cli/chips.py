"""`rsgan chips`: cut scenes into georeferenced GeoTIFF chips plus a chip index."""

from __future__ import annotations

from pathlib import Path

import click

from rsgan.cli._options import BANDS
from rsgan.tiling import EDGE_POLICIES, TileSpec, export_chips, scene_paths


@click.command("chips", short_help="Cut scenes into GeoTIFF chips with an index.")
# SCENES as given: a URL or /vsi path would lose the "//" of its scheme to pathlib
@click.argument("scenes", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (must not exist unless --overwrite).",
)
@click.option("--size", default=256, show_default=True, type=int, help="Chip side, pixels.")
@click.option(
    "--overlap", default=0, show_default=True, type=int, help="Pixels shared by neighbouring chips."
)
@click.option(
    "--edge",
    type=click.Choice(sorted(EDGE_POLICIES)),
    default="shift",
    show_default=True,
    help="shift: move the last row/column inside the scene; pad: pad past the edge.",
)
@click.option(
    "--aoi",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Vector file (any CRS); keep chips overlapping it.",
)
@click.option("--within", is_flag=True, help="With --aoi: keep only chips wholly inside it.")
@click.option(
    "--max-nodata",
    type=click.FloatRange(0, 1),
    default=None,
    help="Skip chips whose nodata fraction exceeds this (0-1).",
)
@click.option("--bands", type=BANDS, default=None, help="1-based bands, e.g. 1,2,3 (default all).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def chips(
    scenes: tuple[str, ...],
    out_dir: Path,
    size: int,
    overlap: int,
    edge: str,
    aoi: Path | None,
    within: bool,
    max_nodata: float | None,
    bands: tuple[int, ...] | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Cut SCENES into SIZE px GeoTIFF chips in OUT, with OUT/index.gpkg.

    SCENES are rasters (files or URLs) or folders of them: a folder stands for the image
    files directly in it (TIFF, PNG, JPEG; not recursive), as in `rsgan train`. Each chip
    keeps the scene's CRS, nodata and band metadata and has its own transform.

    \b
    Examples:
      rsgan chips scene.tif --size 256 --overlap 32 --out chips/ --max-nodata 0.1
      rsgan chips scenes/ --size 256 --out chips/
    """
    files = scene_paths(scenes)  # folders as their rasters: counted in the summary
    index = export_chips(
        files,
        out_dir,
        TileSpec(size, overlap, edge),  # type: ignore[arg-type]
        bands=bands,
        aoi=aoi,
        aoi_within=within,
        max_nodata=max_nodata,
        overwrite=overwrite,
        progress=not quiet,
    )
    attrs = index.attrs
    click.echo(
        f"wrote {len(index)} chip(s) of {attrs.get('chips_total', len(index))} from "
        f"{len(files)} scene(s) to {out_dir} (skipped: {attrs.get('skipped_aoi', 0)} outside "
        f"the AOI, {attrs.get('skipped_nodata', 0)} over the nodata limit); "
        f"index: {out_dir / 'index.gpkg'}"
    )


commands: list[click.Command] = [chips]
