"""Parsers for option values shared by several commands (band lists, sizes), and what
every command needs to know of how it was launched."""

from __future__ import annotations

import os

import click

from rsgan.errors import ConfigError


def parse_bands(value: str | None) -> tuple[int, ...] | None:
    """Parse ``"1,2,3"`` into ``(1, 2, 3)``; None or "" gives None (all bands).

    Raises:
        ConfigError: if an item is not a positive integer or is repeated.
    """
    if value is None or value.strip() == "":
        return None
    bands: list[int] = []
    for item in value.split(","):
        item = item.strip()
        try:
            band = int(item)
        except ValueError:
            raise ConfigError(
                f"band list {value!r}: {item!r} is not an integer; pass 1-based band "
                "indexes separated by commas, e.g. --bands 1,2,3"
            ) from None
        if band < 1:
            raise ConfigError(
                f"band list {value!r}: band {band} is not valid; band indexes start at 1"
            )
        if band in bands:
            raise ConfigError(f"band list {value!r}: band {band} is repeated")
        bands.append(band)
    return tuple(bands)


class BandsParamType(click.ParamType):
    """Click type for ``--bands 1,2,3``."""

    name = "bands"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if value is None or isinstance(value, tuple):
            return value
        try:
            return parse_bands(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


BANDS = BandsParamType()


def other_rank() -> bool:
    """Whether this process is a torchrun worker other than rank 0 (``RANK``). Its
    warnings and messages repeat rank 0's, which speaks for the run."""
    return os.environ.get("RANK", "0").strip() not in ("", "0")
