"""Settable fields: the one definition of a setting that sweep files and the command line expose.

A model family's or an estimator's dataclass marks the fields a user may set with
:func:`setting`: its default, the values it may take, its bounds and a few words on what
it means. The sweep's model kinds, the command line's options (``--width``,
``--population``, ...) and their help text are generated from these fields
(:func:`setting_fields`), so nothing restates a default or a range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

__all__ = ["setting", "setting_fields"]


def setting(default: Any, *, choices: tuple | None = None, minimum: float | None = None,
            maximum: float | None = None, exclusive: bool | tuple[bool, bool] = False, count: bool = False,
            doc: str = "", aliases: tuple[str, ...] = ()) -> Any:
    """A field a sweep file and the command line may set, with its ``default``, the values it may take
    (``choices``), its range (``minimum``/``maximum``; ``exclusive`` excludes both ends, or ``(low, high)``
    says for each), whether it is a count
    the command line accepts written as ``1e6`` (``count``), what it means in a few words (``doc``, the
    option's help) and other spellings of its command-line option (``aliases``: ``("init",)`` adds ``--init``
    to ``--initialization``; a sweep file names the field itself).

    The dataclass stays the one definition: the class still validates its own values (its
    ``__post_init__``); the range here only shapes the command line's option type.
    """
    return field(default=default, metadata={"setting": True, "choices": choices, "minimum": minimum,
                                            "maximum": maximum, "exclusive": exclusive, "count": count, "doc": doc,
                                            "aliases": tuple(aliases)})


def setting_fields(owner: type) -> dict[str, Any]:
    """The dataclass fields of ``owner`` made by :func:`setting`, by name, in declaration order."""
    return {item.name: item for item in dataclasses.fields(owner) if item.metadata.get("setting")}
