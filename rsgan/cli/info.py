"""`rsgan info`: print a checkpoint's metadata or a raster's description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth")


def _checkpoint_lines(meta: dict[str, Any]) -> list[str]:
    config = ", ".join(f"{k}={v}" for k, v in meta.get("config", {}).items())
    lines = [
        f"kind: {meta.get('kind')}",
        f"config: {config}",
        f"nets: {', '.join(meta.get('nets', []))}"
        + (" (generators only)" if meta.get("generators_only") else ""),
        f"steps: {meta.get('steps')}",
    ]
    for name, dom in meta.get("domains", {}).items():
        bands = dom.get("bands")
        lines.append(
            f"domain {name}: {dom.get('count')} band(s) "
            f"{'all' if bands is None else tuple(bands)}, dtype {dom.get('dtype')}"
        )
        norm = dom.get("normalizer")
        if norm:
            pairs = ", ".join(
                f"{lo:g}..{hi:g}" for lo, hi in zip(norm["lo"], norm["hi"], strict=True)
            )
            lines.append(f"  normaliser (-1..1 <- source): {pairs}")
        if dom.get("descriptions") and any(dom["descriptions"]):
            lines.append(f"  descriptions: {dom['descriptions']}")
    for name, summary in meta.get("data", {}).items():
        if isinstance(summary, dict):
            size = summary.get("chip_size")
            lines.append(
                f"data {name}: {summary.get('chips')} chip(s) of "
                f"{f'{size} px' if size else 'unrecorded size'} from {summary.get('scenes')} "
                "scene(s)"
            )
    lines.append(
        f"created: {meta.get('created')} (rsgan {meta.get('rsgan_version')}, "
        f"torch {meta.get('torch_version')})"
    )
    return lines


def _raster_lines(path: Path | str) -> list[str]:
    from rsgan.io import describe

    info = describe(path)
    if info.crs:
        crs = info.crs.to_string()
    elif info.placed:
        placed = [f"{len(info.gcps)} ground control points"] if info.gcps else []
        placed += ["RPCs"] if info.rpcs is not None else []
        where = f" in {info.gcps_crs.to_string()}" if info.gcps and info.gcps_crs else ""
        crs = f"none: placed by {' and '.join(placed)}{where} (outputs keep them)"
    else:
        crs = "none (not georeferenced)"
    lines = [
        f"driver: {info.driver}",
        f"size: {info.width} x {info.height} px (cols x rows), {info.count} band(s)",
        f"dtypes: {', '.join(dict.fromkeys(info.dtypes))}",
        f"crs: {crs}",
        f"resolution: {info.res[0]:g} x {info.res[1]:g}",
        f"bounds: {tuple(round(v, 6) for v in info.bounds)}",
        f"nodata: {info.nodata}",
    ]
    lines.append("bands (for --bands):")
    shown = min(info.count, MAX_BANDS_SHOWN)
    for i in range(shown):
        name = info.descriptions[i] if i < len(info.descriptions) else None
        colour = info.colorinterp[i].name if i < len(info.colorinterp) else "undefined"
        lines.append(f"  {i + 1}: {colour}" + (f", {name!r}" if name else ""))
    if info.count > shown:
        lines.append(f"  ... {info.count - shown} more")
    return lines


MAX_BANDS_SHOWN = 32


@click.command("info", short_help="Show a checkpoint's metadata or a raster's description.")
# PATH as given: a URL or /vsi path would lose the "//" of its scheme to pathlib
@click.argument("text", metavar="PATH", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Checkpoints: print the raw JSON.")
def info(text: str, as_json: bool) -> None:
    """Describe PATH: a checkpoint (.safetensors, .pt) or a raster (a local file, a URL or
    a GDAL /vsi path).

    \b
    Example:
      rsgan info runs/farm/model.safetensors
    """
    from rsgan.io import redact_url, source_path

    path = source_path(text)
    if isinstance(path, Path) and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        from rsgan.checkpoint import read_metadata

        meta = read_metadata(path)
        if as_json:
            click.echo(json.dumps(meta, indent=2))
            return
        lines = _checkpoint_lines(meta)
    else:
        lines = _raster_lines(path)
    click.echo(redact_url(str(path)))  # a signed URL without its signature
    for line in lines:
        click.echo(f"  {line}")


commands: list[click.Command] = [info]
