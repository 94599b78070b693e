"""Checkpoints: safetensors weights plus the JSON metadata a model needs to be used alone.

A checkpoint is one ``.safetensors`` file. Its tensors are named ``"<net>.<parameter>"``
(``"G_AB.model.1.weight"``); its safetensors ``__metadata__`` holds one key, ``"rsgan"``,
a JSON document with:

* ``kind`` ("cyclegan" / "dcgan") and ``config`` (the architecture dataclass as a dict);
* ``domains``: for each data domain ("a" and "b", or "data") its ``bands`` (1-based
  indexes read from the source, or null for all), ``count``, source ``dtype``,
  ``normalizer`` (:meth:`rsgan.io.Normalizer.to_dict`), band ``descriptions`` and
  ``colorinterp`` (colour interpretation names);
* ``nets`` saved, ``generators_only``, ``steps``, a ``data`` summary, ``rsgan_version``,
  ``torch_version``, ``created`` (UTC, ISO 8601) and an optional ``extra`` dict.

So a checkpoint alone is enough to translate or generate with the training statistics.
Loading never unpickles: safetensors holds only raw tensors, and a legacy ``.pt``/``.pth``
file goes through ``torch.load(weights_only=True)``.

The full training state (the nets' weights again, optimisers, schedulers, fake pools, RNG
states, step) is a separate ``train_state.pt`` of plain tensors, numbers, strings, lists
and dicts, written with :func:`save_train_state` and read back with ``weights_only=True``.
It is complete on its own, so resuming never depends on the two files being of the same
step (see ``docs/models-and-training.md``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import json
import os
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rsgan import __version__
from rsgan._types import PathLike
from rsgan.errors import CheckpointError, ConfigError, ModelError
from rsgan.io import Normalizer, atomic_output
from rsgan.models import make_config, model_kind

METADATA_KEY = "rsgan"
FORMAT_VERSION = 1
LEGACY_SUFFIXES = (".pt", ".pth")
_HEADER_LIMIT = 100 * 2**20  # safetensors refuses headers above 100 MB as well
DEFAULT_MODEL_ENV = "RSGAN_MODEL"
"""Environment variable naming the checkpoint used when no model is given."""
DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parent / "assets" / "default_cyclegan_joplin.safetensors"
)
"""The bundled default model (see docs/model-card.md)."""


@dataclass(frozen=True)
class DomainInfo:
    """What a model expects of (or writes for) one data domain.

    Attributes:
        bands: 1-based band indexes read from the source rasters, or None for all bands.
        count: number of bands the nets see.
        dtype: the source data type (generated/translated rasters are written in it).
        normalizer: source values <-> model range [-1, 1], per band; None if unknown.
        descriptions: band descriptions of the source, one per band (None entries allowed).
        colorinterp: colour interpretation of the source bands by name (``"red"``,
            ``"gray"``, ``"undefined"``...), one per band; None if unknown (checkpoints of
            rsgan before it was recorded). rasterio ``ColorInterp`` members are stored by
            name.

    Raises:
        ConfigError: ``bands``, ``descriptions``, ``colorinterp`` or the normaliser of
            another length than ``count``.
    """

    bands: tuple[int, ...] | None
    count: int
    dtype: str
    normalizer: Normalizer | None = None
    descriptions: tuple[str | None, ...] | None = None
    colorinterp: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
            if len(self.bands) != self.count:
                raise ConfigError(
                    f"domain lists {len(self.bands)} bands {self.bands} but count={self.count}"
                )
        if self.descriptions is not None:
            object.__setattr__(self, "descriptions", tuple(self.descriptions))
        if self.colorinterp is not None:
            object.__setattr__(
                self, "colorinterp", tuple(_colour_name(c) for c in self.colorinterp)
            )
        for name in ("descriptions", "colorinterp"):
            values = getattr(self, name)
            if values is not None and len(values) != self.count:
                raise ConfigError(
                    f"domain lists {len(values)} band {name} {values} but count={self.count}; "
                    f"give one per band (None for unknown)"
                )
        if self.normalizer is not None and self.normalizer.count != self.count:
            raise ConfigError(
                f"domain normaliser has {self.normalizer.count} bands but count={self.count}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; inverse of :meth:`from_dict`."""
        return {
            "bands": None if self.bands is None else list(self.bands),
            "count": self.count,
            "dtype": self.dtype,
            "normalizer": None if self.normalizer is None else self.normalizer.to_dict(),
            "descriptions": None if self.descriptions is None else list(self.descriptions),
            "colorinterp": None if self.colorinterp is None else list(self.colorinterp),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DomainInfo:
        """Rebuild from :meth:`to_dict` output."""
        norm = data.get("normalizer")
        bands = data.get("bands")
        descriptions = data.get("descriptions")
        colorinterp = data.get("colorinterp")
        return cls(
            bands=None if bands is None else tuple(bands),
            count=int(data["count"]),
            dtype=str(data["dtype"]),
            normalizer=None if norm is None else Normalizer.from_dict(norm),
            descriptions=None if descriptions is None else tuple(descriptions),
            colorinterp=None if colorinterp is None else tuple(colorinterp),
        )


def _colour_name(value: Any) -> str:
    """A band's colour interpretation by name: ``"red"`` for ``ColorInterp.red`` (an
    IntEnum, whose ``str`` is its number on Python 3.11+) or ``"Red"``."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        return value.lower()
    raise ConfigError(
        f"colour interpretation {value!r} is neither a rasterio ColorInterp nor a name; "
        'pass e.g. ColorInterp.red or "red"'
    )


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper (or ``net``)."""
    return getattr(net, "module", net)


def _as_domain(value: DomainInfo | Mapping[str, Any]) -> DomainInfo:
    return value if isinstance(value, DomainInfo) else DomainInfo.from_dict(value)


def _check_domains(kind: str, config: Any, domains: Mapping[str, DomainInfo]) -> None:
    expected = model_kind(kind).domain_channels(config)
    if set(domains) != set(expected):
        raise ConfigError(
            f"a {kind} checkpoint needs domain info for {sorted(expected)}; got {sorted(domains)}"
        )
    for name, count in expected.items():
        if domains[name].count != count:
            raise ConfigError(
                f"domain {name!r} has {domains[name].count} bands but the {kind} config "
                f"expects {count}"
            )


def save_checkpoint(
    path: PathLike,
    *,
    kind: str,
    config: Any,
    nets: Mapping[str, nn.Module],
    domains: Mapping[str, DomainInfo | Mapping[str, Any]],
    steps: int = 0,
    data: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    generators_only: bool = False,
    overwrite: bool = True,
) -> Path:
    """Write the nets' weights and metadata to one ``.safetensors`` file, atomically.

    Args:
        path: the file to write (``.safetensors``).
        kind: a key of :data:`rsgan.models.MODEL_KINDS`.
        config: the architecture config (dataclass or dict).
        nets: ``{net name: module}``, e.g. from :func:`rsgan.models.build_nets` (DDP
            wrappers are unwrapped).
        domains: ``{domain: DomainInfo}``: "a" and "b" for cyclegan, "data" for dcgan.
        steps: training steps done.
        data: a JSON-safe summary of the training data (sources, chip counts, ...).
        extra: any further JSON-safe metadata.
        generators_only: save only the generators (a small file for inference).
        overwrite: replace an existing file.

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: nets or domains that do not fit the kind/config.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
    """
    spec = model_kind(kind)
    config = make_config(kind, config)
    domain_infos = {name: _as_domain(info) for name, info in domains.items()}
    _check_domains(kind, config, domain_infos)
    names = spec.generators if generators_only else tuple(nets)
    missing = [n for n in names if n not in nets]
    if missing:
        raise ConfigError(f"save_checkpoint: nets {missing} are missing; got {sorted(nets)}")
    tensors: dict[str, torch.Tensor] = {}
    for name in names:
        for key, value in unwrap(nets[name]).state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous().clone()
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config.to_dict(),
        "domains": {name: info.to_dict() for name, info in domain_infos.items()},
        "nets": list(names),
        "generators_only": bool(generators_only),
        "steps": int(steps),
        "data": dict(data or {}),
        "rsgan_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }
    dst = Path(path)
    with atomic_output(dst, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
        # safetensors creates its file readable by its owner only (0600); a checkpoint is
        # shared like the run's other files, so it gets the mode any new file gets
        os.chmod(tmp, _new_file_mode())
    return dst


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (changing it,
    even for a moment, would give files that other threads create meanwhile mode 0666)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


@dataclass
class LoadedModel:
    """A checkpoint's nets with their metadata.

    Attributes:
        kind: "cyclegan" or "dcgan".
        config: the architecture config dataclass.
        nets: ``{net name: module}`` (all nets, or only the generators), in eval mode.
        metadata: the full JSON metadata.
        domains: ``{domain: DomainInfo}``.
        path: the file it was loaded from (None if built in memory).
    """

    kind: str
    config: Any
    nets: dict[str, nn.Module]
    metadata: dict[str, Any]
    domains: dict[str, DomainInfo]
    path: Path | None = None
    _spec: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._spec = model_kind(self.kind)

    @property
    def steps(self) -> int:
        """Training steps the weights have seen."""
        return int(self.metadata.get("steps", 0))

    def _direction(self, direction: str | None) -> tuple[str, str | None, str]:
        directions = self._spec.directions
        if direction is None:
            return next(iter(directions.values()))
        try:
            return directions[direction]
        except KeyError:
            raise ConfigError(
                f"a {self.kind} model has no direction {direction!r}; use one of "
                f"{', '.join(directions)}"
            ) from None

    def generator(self, direction: str | None = None) -> nn.Module:
        """The generator for ``direction`` ("a2b" -> G_AB, "b2a" -> G_BA; dcgan: "generate"
        -> G; None: the first), in eval mode."""
        return self.nets[self._direction(direction)[0]].eval()

    def in_domain(self, direction: str | None = None) -> DomainInfo:
        """The domain the generator of ``direction`` reads.

        Raises:
            ConfigError: for a dcgan model (its generator reads a latent vector).
        """
        name = self._direction(direction)[1]
        if name is None:
            raise ConfigError(f"a {self.kind} generator reads latent vectors, not images")
        return self.domains[name]

    def out_domain(self, direction: str | None = None) -> DomainInfo:
        """The domain the generator of ``direction`` writes."""
        return self.domains[self._direction(direction)[2]]

    def to(self, device: torch.device | str) -> LoadedModel:
        """Move every net to ``device`` (in place); returns self."""
        for net in self.nets.values():
            net.to(device)
        return self


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path}: {problem}; pass a .safetensors file written by `rsgan train` "
        "(or retrain / re-save it)"
    )


def _check_safetensors_header(path: Path) -> None:
    """Refuse pickles, torch zip files and truncated files before safetensors reads them.

    The pickle check only chooses the message: safetensors never unpickles, so a pickle
    would be refused by it as well, in words that do not say what the file is."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(9)
    # a safetensors file is its header's length (8 bytes, little-endian), then the JSON
    # header: a length whose low byte is 0x80 begins like a pickle, but a pickle or a zip
    # file has no "{" after its first 8 bytes
    header_follows = head[8:9] == b"{"
    if not header_follows and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise _fail(
            path,
            "is a pickle / torch.save file, not safetensors; rsgan never unpickles "
            f"checkpoints (a legacy weights file must end in {' or '.join(LEGACY_SUFFIXES)})",
        )
    if len(head) < 8:
        raise _fail(path, f"is truncated or not a safetensors file ({size} bytes)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if header_len > _HEADER_LIMIT or 8 + header_len > size:
        raise _fail(path, "is truncated or corrupt (its header does not fit the file)")


def _read_safetensors(
    path: Path, device: str | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metadata and tensors (none when ``device`` is None) of a safetensors checkpoint."""
    _check_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
        tensors = {} if device is None else load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _fail(path, f"is truncated or corrupt ({exc})") from None
    if METADATA_KEY not in raw:
        raise _fail(path, f"has no '{METADATA_KEY}' metadata (not written by rsgan)")
    try:
        meta = json.loads(raw[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise _fail(path, f"has unreadable metadata ({exc})") from None
    return meta, tensors


def _torch_load(path: Path, device: str) -> Any:
    """``torch.load(weights_only=True)`` without torch's remarks on the pickle protocol
    (e.g. "Detected pickle protocol 4 ..."): a file it cannot read is reported by the
    caller, in one line that says what to do."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location=device, weights_only=True)


def _read_legacy(path: Path, device: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A ``.pt``/``.pth`` file holding ``{"rsgan": <metadata dict or JSON>, "weights": {...}}``."""
    try:
        obj = _torch_load(path, device)
    except Exception as exc:  # any reader error (UnpicklingError, SafetensorError, EOF...)
        raise _fail(
            path,
            "could not be read without unpickling code (it is corrupt, truncated or holds "
            f"Python objects) ({type(exc).__name__})",
        ) from None
    if not isinstance(obj, dict) or METADATA_KEY not in obj or "weights" not in obj:
        raise _fail(path, "holds no rsgan metadata (a bare state dict is not enough)")
    meta = obj[METADATA_KEY]
    if isinstance(meta, str):
        meta = json.loads(meta)
    return dict(meta), dict(obj["weights"])


def _split_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    per_net: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        net, _, param = key.partition(".")
        per_net.setdefault(net, {})[param] = value
    return per_net


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without building nets or reading weights.

    Raises:
        CheckpointError: as :func:`load_model`.
    """
    src = Path(path)
    if not src.is_file():
        raise CheckpointError(f"checkpoint {src} does not exist (or is not a file)")
    if src.suffix.lower() in LEGACY_SUFFIXES:
        return _read_legacy(src, "cpu")[0]
    return _read_safetensors(src, None)[0]


def default_model_path() -> Path:
    """The checkpoint used when no model is given (``load_model(None)``,
    ``translate_raster(..., model=None)``): ``$RSGAN_MODEL`` or the bundled default.

    Raises:
        ModelError: when neither exists.
    """
    env = os.environ.get(DEFAULT_MODEL_ENV)
    if env:
        if not Path(env).is_file():
            raise ModelError(
                f"${DEFAULT_MODEL_ENV} is {env}, which is not a file; point it to a checkpoint "
                f"(.safetensors), or unset it to use the bundled default model"
            )
        return Path(env)
    if not DEFAULT_MODEL_PATH.is_file():
        raise ModelError(
            f"no model given and the bundled default model {DEFAULT_MODEL_PATH} is missing "
            f"from this install; pass model=<checkpoint.safetensors>, --model, or set "
            f"{DEFAULT_MODEL_ENV}"
        )
    return DEFAULT_MODEL_PATH


def load_model(
    path_or_model: PathLike | LoadedModel | None = None, *, device: Any = "cpu"
) -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` (or pass a LoadedModel through).

    Args:
        path_or_model: a ``.safetensors`` file (or a legacy ``.pt``/``.pth`` saved as
            ``{"rsgan": metadata, "weights": state}``), an already loaded model, or None:
            the model ``translate_raster`` uses by default (:func:`default_model_path`:
            ``$RSGAN_MODEL``, else the bundled default model).
        device: where the nets go.

    Returns:
        The :class:`LoadedModel`, nets in eval mode.

    Raises:
        CheckpointError: missing, truncated or corrupt file; a pickle; missing metadata;
            weights that do not fit the stored architecture (for None and a bad
            ``$RSGAN_MODEL`` file, the message begins ``$RSGAN_MODEL:``).
        ModelError: None given, and ``$RSGAN_MODEL`` names no file, or it is unset and the
            bundled default model is missing from the install.
    """
    if isinstance(path_or_model, LoadedModel):
        return path_or_model.to(device)
    if path_or_model is None:
        path = default_model_path()
        if os.environ.get(DEFAULT_MODEL_ENV):
            try:
                return load_model(path, device=device)
            except CheckpointError as exc:
                raise CheckpointError(f"${DEFAULT_MODEL_ENV}: {exc}") from None
        return load_model(path, device=device)
    path = Path(path_or_model)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist (or is not a file); pass the model.safetensors "
            "written by `rsgan train`"
        )
    dev = str(device)
    reader = _read_legacy if path.suffix.lower() in LEGACY_SUFFIXES else _read_safetensors
    meta, tensors = reader(path, dev)
    try:
        kind = meta["kind"]
        config = make_config(kind, meta["config"])
        domains = {name: DomainInfo.from_dict(d) for name, d in meta["domains"].items()}
        _check_domains(kind, config, domains)
    except (KeyError, TypeError, ConfigError) as exc:
        raise _fail(path, f"has incomplete or invalid metadata ({exc})") from None
    built = model_kind(kind).build(config)
    per_net = _split_tensors(tensors)
    unknown = sorted(set(per_net) - set(built))
    if unknown or not per_net:
        raise _fail(path, f"holds weights for nets {unknown or 'none'} unknown to a {kind} model")
    nets: dict[str, nn.Module] = {}
    for name, state in per_net.items():
        net = built[name]
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise _fail(
                path,
                f"weights of {name} do not fit the stored {kind} architecture "
                f"({' '.join(line.strip() for line in first[:3])})",
            ) from None
        nets[name] = net.to(dev).eval()
    return LoadedModel(
        kind=kind, config=config, nets=nets, metadata=meta, domains=domains, path=path
    )


# --------------------------------------------------------------------------- train state


def save_train_state(path: PathLike, state: Mapping[str, Any]) -> Path:
    """Write the full training state atomically with ``torch.save``.

    ``state`` must hold only tensors, numbers, strings, None, lists, tuples and dicts
    (what ``torch.load(weights_only=True)`` accepts): optimiser and scheduler state dicts,
    pools as tensors, RNG states as tensors/lists, the step.
    """
    dst = Path(path)
    # through a Python file: its OSError (a full disk) is the cause of torch's error;
    # torch's own writer of a path says only "basic_ios::clear: iostream error"
    with atomic_output(dst, overwrite=True) as tmp, tmp.open("wb") as f:
        torch.save(dict(state), f)
    return dst


def load_train_state(path: PathLike) -> dict[str, Any]:
    """Read a state written by :func:`save_train_state`, never unpickling code.

    Raises:
        CheckpointError: missing, corrupt or truncated file.
    """
    src = Path(path)
    if not src.is_file():
        raise CheckpointError(
            f"training state {src} does not exist; resume needs the train_state.pt of an "
            "earlier run in the same output folder (or start without --resume)"
        )
    try:
        state = _torch_load(src, "cpu")
    except Exception as exc:  # any reader error (UnpicklingError, SafetensorError, EOF...)
        raise CheckpointError(
            f"training state {src} is corrupt or truncated ({type(exc).__name__}); delete it "
            "and start without --resume"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"training state {src} is not a dict; start without --resume")
    return state


__all__ = [
    "DEFAULT_MODEL_ENV",
    "DEFAULT_MODEL_PATH",
    "DomainInfo",
    "LoadedModel",
    "default_model_path",
    "load_model",
    "load_train_state",
    "read_metadata",
    "save_checkpoint",
    "save_train_state",
    "unwrap",
]
