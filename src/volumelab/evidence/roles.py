"""What a verdict reads each kind of row as: its role, and which rows of another role belong to a method.

A study reads methods by role, never by name (:meth:`volumelab.evidence.PanelData.method`): the
*sampler* (G&C), the *trainer* (GD) and the *chance* rows a sampler stores beside its own (its prior
rows). Every method registers its rows' roles here when it is registered for sweeps
(:func:`volumelab.experiments.methods.register_method` does it), so the evidence layer needs nothing of
the sweep code:

    >>> from volumelab.evidence.roles import companion, register_role, role_of, unregister_role
    >>> register_role("mine", "sampler", companions={"chance": lambda method: f"{method}_floor"})
    >>> register_role("mine_floor", "chance")
    >>> role_of("mine"), companion("mine2", "mine", "chance"), role_of("unknown")
    ('sampler', 'mine2_floor', 'other')
    >>> unregister_role("mine"); unregister_role("mine_floor")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["CHANCE", "OTHER", "SAMPLER", "TRAINER", "companion", "register_role", "role_of", "unregister_role"]

#: The roles the verdicts read: a method that samples the prior and keeps what fits the data, one that
#: trains from an initialization, and rows giving the chance level; anything else is not read by role.
SAMPLER, TRAINER, CHANCE, OTHER = "sampler", "trainer", "chance", "other"

_ROLES: dict[str, str] = {}
_LOADED = False
#: ``(method type, role) -> name of that method's rows of the role``.
_COMPANIONS: dict[tuple[str, str], Callable[[str], str]] = {}


def register_role(row_type: str, role: str, *, companions: Mapping[str, Callable[[str], str]] | None = None) -> None:
    """Rows of ``row_type`` are read as ``role``; ``companions`` maps a role to the name that a method of this
    type gives its rows of that role (``method -> name``)."""
    unregister_role(row_type)
    _ROLES[str(row_type)] = str(role)
    for companion_role, name in (companions or {}).items():
        _COMPANIONS[(str(row_type), str(companion_role))] = name


def unregister_role(row_type: str) -> None:
    _ROLES.pop(str(row_type), None)
    for other in [key for key in _COMPANIONS if key[0] == str(row_type)]:
        del _COMPANIONS[other]


def _load_builtins() -> None:
    """The built-in methods register their roles when the sweep package is imported; a lookup before that
    imports it by name, once (as :func:`volumelab.evidence.get_study` loads the project's studies), so a
    verdict never reads a built-in method as ``other``."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("volumelab.experiments")


def role_of(row_type: str) -> str:
    """The role of rows of ``row_type`` (``other`` when none is registered)."""
    if str(row_type) not in _ROLES:
        _load_builtins()
    return _ROLES.get(str(row_type), OTHER)


def companion(method: str, method_type: str, role: str) -> str | None:
    """The name of the rows of ``role`` that ``method`` (of ``method_type``) stores beside its own, if any."""
    if (str(method_type), str(role)) not in _COMPANIONS:
        _load_builtins()
    name = _COMPANIONS.get((str(method_type), str(role)))
    return name(str(method)) if name is not None else None
