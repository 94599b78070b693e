"""Translate labelled images into the target domain and keep their labels (CyCADA's pixel step).

:func:`augment_segmentation_dataset` translates each source image with a model and writes
the image/mask pair to ``out_dir``::

    out_dir/images/<stem>.tif     the translated image (the source's grid, CRS and nodata)
    out_dir/masks/<stem>.tif      the mask, pixel for pixel, on the translated image's grid
    out_dir/index.csv             one row per original and per translated pair

:class:`MixedSegmentationDataset` reads that index and yields ``{"image", "mask"}`` samples
(the convention of torchgeo and segmentation_models_pytorch) that mix original and
translated images at a chosen ratio.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from affine import Affine
from rasterio.windows import Window
from torch.utils.data import Dataset

from rsgan._types import PathLike
from rsgan.errors import ConfigError, OutputExistsError, RsganError
from rsgan.io import (
    IMAGE_EXTENSIONS,
    Normalizer,
    NotGeoreferencedWarning,
    RasterInfo,
    absolute_source,
    atomic_output,
    check_local_output,
    copy_band_metadata,
    copy_placement,
    describe,
    list_image_files,
    open_output,
    open_raster,
    output_profile,
    read_masked,
    same_crs,
    same_source,
    source_name,
    source_path,
    source_stem,
)

INDEX_NAME = "index.csv"
INDEX_COLUMNS = ("image", "mask", "source_image", "source_mask", "translated")
BANDS_COLUMN = "bands"
"""Optional index column: the 1-based bands of ``image`` that samples read ("1,2,3"), set
on original rows when the images were translated with ``bands=``; empty: all bands."""


class PairError(RsganError, ValueError):
    """An image and its mask that cannot be paired (missing partner, different grid)."""


class AugmentError(RsganError, ValueError):
    """Some pairs failed; the others were written.

    Attributes:
        index: the index of the pairs that were written (as returned on success).
        failures: ``{stem: message}`` for each pair that failed.
    """

    def __init__(self, message: str, index: pd.DataFrame, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.index = index
        self.failures = failures


@dataclass(frozen=True, slots=True)
class Pair:
    """A source image and its mask, matched by file stem."""

    stem: str
    image: Path | str
    mask: Path | str


# ---------------------------------------------------------------------------------------
# Pairing and checking
# ---------------------------------------------------------------------------------------


def _files(value: PathLike | Iterable[PathLike], what: str) -> list[Path | str]:
    """The files of a folder, or the files given: local paths as :class:`Path`, a URL,
    ``/vsi`` path or ``vrt://`` name kept as the string given (pathlib would fold its
    ``//``; :func:`rsgan.io.source_path`)."""
    if isinstance(value, (str, os.PathLike)):
        source = source_path(value)
        if isinstance(source, Path) and source.is_dir():
            return list(list_image_files(source, IMAGE_EXTENSIONS))
        return [source]
    files = [source_path(v) for v in value]
    if not files:
        raise ConfigError(f"no {what} given; pass a folder or a list of files")
    return files


VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet", ".geoparquet")


def _refuse_vector_labels(masks: Sequence[Path | str]) -> None:
    """Refuse vector labels (footprints) given as masks: they pair with no image."""
    vectors = [m for m in masks if Path(source_name(m)).suffix.lower() in VECTOR_SUFFIXES]
    if vectors:
        raise ConfigError(
            f"masks must be rasters on the images' grids, but {vectors[0]} is a vector file; "
            "burn its shapes onto each image's grid first (rasterio.features.rasterize with "
            "the image's transform and shape, as footprint_mask in "
            "examples/domain_adaptation_joplin.py does) and pass the folder of those masks"
        )


def pair_files(
    images: PathLike | Iterable[PathLike], masks: PathLike | Iterable[PathLike]
) -> tuple[list[Pair], dict[str, str]]:
    """Match images with masks by file stem.

    Args:
        images: a folder of images or a list of image files.
        masks: a folder of masks or a list of mask files.

    Returns:
        The pairs (in image order) and ``{stem: message}`` for files without a partner or
        stems used twice.
    """
    image_files, mask_files = _files(images, "images"), _files(masks, "masks")
    _refuse_vector_labels(mask_files)
    by_stem: dict[str, Path | str] = {}
    problems: dict[str, str] = {}
    for mask in mask_files:
        stem = source_stem(mask)
        if stem in by_stem:
            problems[stem] = f"masks {by_stem[stem]} and {mask} share the stem"
        by_stem[stem] = mask
    pairs, seen = [], set()
    for image in image_files:
        stem = source_stem(image)
        if stem in seen:
            problems[stem] = f"two images share the stem {stem!r} (e.g. {image})"
            continue
        seen.add(stem)
        partner = by_stem.get(stem)
        if partner is None:
            problems[stem] = f"image {image} has no mask named {stem}.*"
        elif same_source(image, partner):
            problems[stem] = (
                f"image {image} is also its own mask ({partner}); pass the folder or "
                "files of the masks as masks, not the images"
            )
        elif stem not in problems:
            pairs.append(Pair(stem, image, partner))
    for stem, mask in by_stem.items():
        if stem not in seen:
            problems[stem] = f"mask {mask} has no image named {stem}.*"
    return pairs, problems


def _pixel_grid(info: RasterInfo) -> bool:
    """True for a raster with no georeference at all (its grid is its pixel grid)."""
    return info.crs is None and info.transform == Affine.identity()


def check_alignment(image: RasterInfo, mask: RasterInfo) -> None:
    """Check that ``mask`` lies on ``image``'s grid (same size, transform and CRS).

    CRSs that differ in axis order only (OGC:CRS84 and EPSG:4326) are the same here
    (:func:`rsgan.io.same_crs`). A mask with no georeference at all (no CRS, identity
    transform, e.g. a PNG) is taken to be on the image's pixel grid when the sizes agree.

    Raises:
        PairError: naming both files and what differs.
    """
    where = f"image {image.path} and mask {mask.path}"
    if image.shape != mask.shape:
        raise PairError(
            f"{where} differ in size: {image.width}x{image.height} vs "
            f"{mask.width}x{mask.height} px; masks must be on the image's grid"
        )
    if _pixel_grid(mask):
        return
    if not same_crs(image.crs, mask.crs):
        raise PairError(
            f"{where} are in different CRSs ({image.crs} vs {mask.crs}); "
            "reproject the mask onto the image's grid"
        )
    tolerance = 1e-6 * max(image.res)
    if not image.transform.almost_equals(mask.transform, precision=tolerance):
        raise PairError(
            f"{where} have different transforms ({tuple(image.transform)[:6]} vs "
            f"{tuple(mask.transform)[:6]}); resample the mask onto the image's grid"
        )


# ---------------------------------------------------------------------------------------
# Writing pairs
# ---------------------------------------------------------------------------------------


def copy_mask_to_grid(
    mask: PathLike, grid: RasterInfo, dst: PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``mask``'s pixels unchanged onto ``grid`` (its size, transform and CRS).

    The mask keeps its own bands, data type, nodata, colour table, band descriptions and
    tags (:func:`rsgan.io.copy_band_metadata`).

    Raises:
        PairError: the mask's size differs from the grid's.
    """
    dst = Path(dst)
    with open_raster(mask) as src:
        if (src.height, src.width) != grid.shape:
            raise PairError(
                f"mask {mask} is {src.width}x{src.height} px but the grid of "
                f"{grid.path} is {grid.width}x{grid.height} px"
            )
        data = src.read()
        own = RasterInfo.from_dataset(src)
        profile = output_profile(grid, count=src.count, dtype=src.dtypes[0], nodata=src.nodata)
    with atomic_output(dst, overwrite=overwrite, inputs=(mask,)) as tmp:
        with open_output(tmp, **profile) as out:
            copy_band_metadata(own, out)  # before the pixels, as the colour interpretation
            copy_placement(grid, out)
            out.write(data)
    return dst


def _output_paths(out_dir: Path, stem: str) -> tuple[Path, Path]:
    return out_dir / "images" / f"{stem}.tif", out_dir / "masks" / f"{stem}.tif"


def _refuse_existing(paths: Sequence[Path]) -> None:
    existing = [p for p in paths if p.exists()]
    if existing:
        shown = ", ".join(map(str, existing[:3])) + (" ..." if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output(s) exist already ({shown}); pass "
            "overwrite=True (--overwrite) or choose another output folder"
        )


def augment_segmentation_dataset(
    images: PathLike | Iterable[PathLike],
    masks: PathLike | Iterable[PathLike],
    model: Any,
    out_dir: PathLike,
    *,
    direction: str = "a2b",
    overwrite: bool = False,
    progress: bool = True,
    **translate_kwargs: Any,
) -> pd.DataFrame:
    """Translate labelled images into the target domain and write them with their masks.

    Each image is translated with :func:`rsgan.pipelines.translate.translate_raster` to
    ``out_dir/images/<stem>.tif``; its mask is copied pixel for pixel onto the translated
    image's grid as ``out_dir/masks/<stem>.tif``. ``out_dir/index.csv`` lists the original
    pairs (``translated`` False) and the translated ones (True); translated paths are
    relative to ``out_dir``. With ``bands=`` (e.g. the RGB bands of 4-band NAIP for an RGB
    model) the index's ``bands`` column makes the original rows read those bands too, so
    original and translated samples have the same bands.

    Args:
        images: a folder of images (GeoTIFFs or plain image chips) or a list of files.
        masks: a folder or list of masks, matched to images by file stem.
        model: a checkpoint path, a ``LoadedModel``, a ``torch.nn.Module``, or None for the
            default model (loaded once for all images).
        out_dir: output folder (created if missing).
        direction: ``"a2b"`` or ``"b2a"`` for a CycleGAN checkpoint.
        overwrite: replace existing outputs.
        progress: show a progress bar over pairs.
        **translate_kwargs: passed on to ``translate_raster`` (``tile``, ``overlap``,
            ``bands``, ...).

    Returns:
        The index (columns ``image``, ``mask``, ``source_image``, ``source_mask``,
        ``translated``, ``bands``), with absolute paths (``index.csv`` stores the translated pairs'
        paths relative to ``out_dir``).

    Raises:
        OutputExistsError: outputs exist and ``overwrite`` is False (checked before any work).
        ConfigError: a vector file (footprints...) given as masks (before any work).
        AugmentError: after writing the good pairs, when some pairs failed (unpaired files,
            misaligned grids, unreadable or untranslatable images); ``.index`` holds the
            written index and ``.failures`` the messages.
    """
    from rsgan._progress import tqdm
    from rsgan.pipelines.translate import translate_raster

    check_local_output(out_dir, "output folder")
    out = Path(out_dir)
    pairs, failures = pair_files(images, masks)
    total = len(pairs) + len(failures)
    index_path = out / INDEX_NAME
    if not overwrite:
        _refuse_existing(
            [index_path, *(p for pair in pairs for p in _output_paths(out, pair.stem))]
        )
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if model is None:
        from rsgan.pipelines.translate import default_model_path

        model = default_model_path()
    if isinstance(model, (str, os.PathLike)):
        from rsgan.checkpoint import load_model

        model = load_model(model)  # once for all images
    bands = translate_kwargs.get("bands")
    selected = "" if bands is None else ",".join(str(int(b)) for b in bands)
    rows: list[dict[str, Any]] = []
    unplaced: list[str] = []
    for pair in tqdm(pairs, desc="translating pairs", unit="pair", disable=not progress):
        image_out, mask_out = _output_paths(out, pair.stem)
        written = False
        try:
            with _not_georeferenced(unplaced, pair.stem):
                check_alignment(describe(pair.image), describe(pair.mask))
                translate_raster(
                    pair.image,
                    image_out,
                    model,
                    direction=direction,
                    overwrite=overwrite,
                    progress=False,
                    **translate_kwargs,
                )
                written = True
                copy_mask_to_grid(pair.mask, describe(image_out), mask_out, overwrite=overwrite)
        except RsganError as exc:
            if written:  # no image without its mask (a full disk) in the output folder
                with contextlib.suppress(OSError):
                    image_out.unlink()
            failures[pair.stem] = str(exc)
            continue
        # originals stay where they are: absolute, since relative paths in the index
        # resolve against its own folder, not the caller's working directory
        original_image, original_mask = absolute_source(pair.image), absolute_source(pair.mask)
        rows.append(
            _index_row(original_image, original_mask, pair.image, pair.mask, False, selected)
        )
        rows.append(
            _index_row(
                image_out.relative_to(out), mask_out.relative_to(out), pair.image, pair.mask, True
            )
        )
    if unplaced:
        shown = ", ".join(unplaced[:3]) + (", ..." if len(unplaced) > 3 else "")
        warnings.warn(
            NotGeoreferencedWarning(
                f"{len(unplaced)} of {total} pair(s) have no CRS ({shown}): they are used as "
                "plain images, and their outputs carry pixel coordinates only"
            ),
            stacklevel=2,
        )
    with atomic_output(index_path, overwrite=overwrite, suffix=".csv") as tmp:
        pd.DataFrame(rows, columns=[*INDEX_COLUMNS, BANDS_COLUMN]).to_csv(tmp, index=False)
    index = load_index(index_path)  # the returned paths are absolute
    if failures:
        lines = "\n".join(f"  {stem}: {msg}" for stem, msg in sorted(failures.items()))
        raise AugmentError(
            f"{len(failures)} of {total} pair(s) failed; "
            f"the other {len(rows) // 2} were written to {index_path}:\n{lines}",
            index,
            failures,
        )
    return index


@contextlib.contextmanager
def _not_georeferenced(unplaced: list[str], stem: str) -> Iterator[None]:
    """Hold back the no-CRS warnings of one pair (its image, mask and output each give
    one) and note the pair in ``unplaced``: the caller warns once for all pairs."""
    held: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                held = list(caught)
    finally:  # a failing pair's warnings too: they may explain the failure
        for w in held:
            if issubclass(w.category, NotGeoreferencedWarning):
                if stem not in unplaced:
                    unplaced.append(stem)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _index_row(
    image: Path | str,
    mask: Path | str,
    source_image: Path | str,
    source_mask: Path | str,
    translated: bool,
    bands: str = "",
) -> dict[str, Any]:
    return {
        "image": os.fspath(image),
        "mask": os.fspath(mask),
        "source_image": absolute_source(source_image),
        "source_mask": absolute_source(source_mask),
        "translated": translated,
        BANDS_COLUMN: bands,
    }


# ---------------------------------------------------------------------------------------
# The mixed dataset
# ---------------------------------------------------------------------------------------


def load_index(index: PathLike | pd.DataFrame) -> pd.DataFrame:
    """Read an augmentation index; relative paths resolve against the index's folder."""
    if isinstance(index, pd.DataFrame):
        return _with_bands(index.copy())
    path = Path(index)
    if not path.is_file():
        raise ConfigError(
            f"index {path} does not exist; pass the index.csv written by "
            "augment_segmentation_dataset (rsgan augment)"
        )
    table = pd.read_csv(path, dtype={BANDS_COLUMN: str}, keep_default_na=False)
    missing = [c for c in INDEX_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"index {path} lacks column(s) {', '.join(missing)}; "
            "pass an index.csv written by rsgan augment"
        )
    for column in ("image", "mask"):
        table[column] = [os.fspath(_under(path.absolute().parent, v)) for v in table[column]]
    return _with_bands(table)


def _with_bands(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``bands`` column as text ("1,2,3", "" for all bands): added to
    an index from before the column, and cells that pandas read as numbers (a lone band,
    ``1.0``) or NaN made text again."""
    if BANDS_COLUMN not in table.columns:
        table[BANDS_COLUMN] = ""
    table[BANDS_COLUMN] = [_bands_text(v) for v in table[BANDS_COLUMN]]
    return table


def _bands_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)):
        return str(int(value))
    return str(value)


def _parse_bands(value: Any) -> list[int] | None:
    """The ``bands`` cell of an index row as 1-based indexes; None for all bands."""
    text = _bands_text(value)
    return [int(b) for b in text.split(",")] if text.strip() else None


def _under(base: Path, value: str) -> Path | str:
    p = source_path(value)
    if isinstance(p, str):  # a URL, /vsi path or vrt:// name, as stored
        return p
    return p if p.is_absolute() else base / p


class MixedSegmentationDataset(Dataset):
    """Segmentation samples mixing original and translated images at a chosen ratio.

    One sample per original pair; for ``round(translated_ratio * n)`` of them, picked at
    random with ``seed``, the translated image (with its copied mask) is used instead.

    Samples are ``{"image": float32 tensor (C, H, W), "mask": int64 tensor (H, W),
    "translated": bool}``. An original image translated with ``bands=`` gives those
    bands (the index's ``bands`` column), like its translated image. Images are
    normalised with ``normalizer`` (an :class:`rsgan.io.Normalizer`, or any callable from
    a ``(C, H, W)`` array to a float array); None uses the natural range of the image's
    dtype mapped to [-1, 1] (``Normalizer.for_dtype``: uint8 0..255). The mask is band 1
    of the mask file, as stored, except where the image holds no data: pixels invalid in
    any band of the image (its nodata value, internal mask or alpha band, NaN or
    infinity; :func:`rsgan.io.read_valid_mask`) are labelled ``ignore_index`` and are 0
    in the image (the middle of the normalised range), so that a loss with that
    ``ignore_index`` learns nothing from them.

    Args:
        index: an index DataFrame or the path of an index.csv.
        translated_ratio: share of samples that use the translated image, 0..1.
        seed: seed of the choice of which samples are translated.
        normalizer: see above.
        ignore_index: the label of pixels the image holds no data for (255, the value
            masks use for nodata and segmentation losses are commonly told to ignore;
            -100 is what ``torch.nn.CrossEntropyLoss`` ignores by default); None: samples
            as stored, labels over the image's nodata included, and the image's nodata
            values normalised like data.

    Raises:
        ConfigError: a ratio outside 0..1, more translated samples asked for than the
            index holds, or an ``ignore_index`` that is not a whole number.
        PairError: (reading a sample) an image and its mask of different sizes.
    """

    def __init__(
        self,
        index: PathLike | pd.DataFrame,
        *,
        translated_ratio: float = 0.5,
        seed: int = 0,
        normalizer: Normalizer | Callable[[np.ndarray], np.ndarray] | None = None,
        ignore_index: int | None = 255,
    ) -> None:
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
        ):
            raise ConfigError(
                f"ignore_index={ignore_index!r}; pass a whole number (such as 255, the label "
                "of pixels without image data) or None to keep the masks as stored"
            )
        if not 0.0 <= translated_ratio <= 1.0:
            raise ConfigError(f"translated_ratio={translated_ratio}; pass a share between 0 and 1")
        table = load_index(index)
        flags = table["translated"].astype(str).str.lower().isin(("true", "1"))
        originals = table[~flags].reset_index(drop=True)
        translated = {row.source_image: row for row in table[flags].itertuples()}
        if originals.empty:
            raise ConfigError("the index lists no original pairs; rerun rsgan augment")
        wanted = round(translated_ratio * len(originals))
        candidates = [i for i, src in enumerate(originals["source_image"]) if src in translated]
        if wanted > len(candidates):
            raise ConfigError(
                f"translated_ratio={translated_ratio} needs {wanted} translated pairs but the "
                f"index has {len(candidates)} for its {len(originals)} originals; lower the ratio"
            )
        rng = np.random.default_rng(seed)
        chosen = set(rng.choice(candidates, size=wanted, replace=False).tolist())
        self.samples: list[tuple[str, str, bool]] = []
        self._bands: list[list[int] | None] = []
        for i, row in enumerate(originals.itertuples()):
            use = translated[row.source_image] if i in chosen else row
            self.samples.append((use.image, use.mask, i in chosen))
            self._bands.append(_parse_bands(getattr(use, BANDS_COLUMN)))
        self.normalizer = normalizer
        self.ignore_index = None if ignore_index is None else int(ignore_index)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def translated(self) -> list[bool]:
        """Whether each sample uses the translated image."""
        return [flag for _, _, flag in self.samples]

    def __getitem__(self, i: int) -> dict[str, Any]:
        image_path, mask_path, flag = self.samples[i]
        valid: np.ndarray | None = None
        with open_raster(image_path) as src:
            bands = self._bands[i]  # an original's bands= selection, or all
            if self.ignore_index is None:
                image = src.read(bands)
            else:
                image, valid = read_masked(src, Window(0, 0, src.width, src.height), bands)
        with open_raster(mask_path) as src:
            mask = src.read(1).astype(np.int64)
        if mask.shape != image.shape[1:]:
            raise PairError(
                f"image {image_path} is {image.shape[2]}x{image.shape[1]} px but its mask "
                f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} px; masks must be on the "
                "image's grid (rsgan augment writes them so)"
            )
        norm = self.normalizer or Normalizer.for_dtype(str(image.dtype), image.shape[0])
        values = norm.normalize(image) if isinstance(norm, Normalizer) else norm(image)
        values = np.ascontiguousarray(values, dtype=np.float32)
        if valid is not None and not valid.all():
            if not values.flags.writeable:  # a callable's read-only result
                values = values.copy()
            values[:, ~valid] = 0.0
            mask[~valid] = self.ignore_index
        return {
            "image": torch.from_numpy(values),
            "mask": torch.from_numpy(mask),
            "translated": flag,
        }


__all__ = [
    "AugmentError",
    "MixedSegmentationDataset",
    "Pair",
    "PairError",
    "augment_segmentation_dataset",
    "check_alignment",
    "copy_mask_to_grid",
    "load_index",
    "pair_files",
]
