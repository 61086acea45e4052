"""Pieces shared by the sweep schema's modules (config, kinds, methods)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from .._counts import parse_count
from ..errors import VolumelabError

__all__ = ["ConfigError", "Count", "Strict"]

#: An integer count that may be written ``1e6`` or ``2.0e5`` (see :func:`volumelab._counts.parse_count`).
Count = Annotated[int, BeforeValidator(parse_count)]


class ConfigError(VolumelabError):
    """A sweep config is invalid; the message names the file and the field."""


class Strict(BaseModel):
    """Settings read from a sweep file: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
