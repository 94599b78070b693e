"""`rsgan demo`: translate a real scene end to end with the bundled default model."""

from __future__ import annotations

from pathlib import Path

import click

from rsgan.pipelines.demo import run_demo


@click.command("demo", short_help="Translate a scene with the default model, end to end.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for translated.tif and before_after.png.",
)
@click.option(
    "--scene",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Input scene (default: the Joplin tile held out from the bundled model's training, "
    "from $RSGAN_SHARED_DATA or ../shared/data, else a synthesised one).",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint to use (default: $RSGAN_MODEL, else the bundled default model).",
)
@click.option("--overwrite", is_flag=True, help="Replace earlier demo outputs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def demo(
    out_dir: Path, scene: Path | None, model: Path | None, overwrite: bool, quiet: bool
) -> None:
    """Translate a pre-disaster scene into post-tornado style with the bundled model.

    Writes OUT/translated.tif (same grid and CRS as the scene) and OUT/before_after.png.
    Without --scene and without the real data, a line on stderr says where the data was
    looked for, before the synthesised scene is made and translated.
    """
    result = run_demo(
        out_dir,
        scene=scene,
        model=model,
        overwrite=overwrite,
        progress=not quiet,
        notice=lambda line: click.echo(line, err=True),  # before the translation's wait
    )
    kind = "synthesised scene" if result.synthetic else "scene"
    click.echo(f"{kind}: {result.scene}")
    click.echo(f"translated: {result.output}")
    click.echo(f"before/after: {result.quicklook}")
    click.echo(
        f"{result.megapixels:.2f} Mpx in {result.seconds:.1f} s "
        f"({result.mpx_per_s:.2f} Mpx/s end to end)"
    )


commands: list[click.Command] = [demo]
