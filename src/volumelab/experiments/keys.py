"""Run keys: one mechanism, one declared migration table.

A run's key is the digest of what changes its numbers, in canonical form: the problem
(a file problem by its contents), the model as the method sees it, the method's type and
settings less those that only decide where or in what pieces it computes
(``execution_fields``), what the settings resolve to on this machine (the device type, a
sampler's choice and block size), the seed, the seed its problem is made from where that
is not the run's, the replicate stream where it is not 0, and
:data:`~volumelab.RESULTS_VERSION`. Sweep and method names do not enter it: renaming a
sweep or a method reruns nothing.

**The migration table** (:data:`KEY_MIGRATIONS`) is the one place that says how a setting
enters a key when that differs from its plain value: a field that joined the key after
rows were stored is left out while it holds the value those rows were computed with (so
they keep their keys), a renamed field enters under the name it had, and a field that
only matters in some settings enters only there. Adding a field to a problem kind, model
family or method is one line here (or, for a plug-in method, its ``key_defaults``), never a
new mechanism.

**Stores written with the earlier key format** (format 1: the same payload plus the sweep
and method names) are migrated in place: :func:`legacy_run_key` computes a planned run's
format-1 key, and the store renames the rows it finds under it
(:meth:`~volumelab.experiments.store.ResultsStore.migrate_keys`), with their extra rows and
arrays, before a sweep runs or reports; nothing is rerun.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KEY_FORMAT", "KEY_MIGRATIONS", "KeyMigration", "canonical", "declare_key_migration", "digest"]

#: The key's format: 2 since the sweep and method names left it (format 1 had them).
KEY_FORMAT = 2


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class KeyMigration:
    """How one field of a problem kind, a model kind or a method type enters run keys.

    Attributes:
        part: ``"problem"``, ``"model"`` or ``"method"``.
        kind: The problem or model kind, or the method type.
        field: The field.
        old: The value rows stored before the field joined the key were computed with: the field is left out
            of the key while it holds it (``UNSET``: no such value).
        keyed_as: The name the field enters the key under (its name when the rows were stored), if not its own.
        relevant: ``settings -> bool``: the field enters only where this holds (``None``: always).
        why: The reason, in words.
    """

    part: str
    kind: str
    field: str
    old: Any = UNSET
    keyed_as: str | None = None
    relevant: Callable[[Mapping[str, Any]], bool] | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if self.part not in ("problem", "model", "method"):
            raise ValueError(f"part must be problem, model or method, got {self.part!r}")


def _joined(part: str, kind: str, defaults: Mapping[str, Any], why: str) -> list[KeyMigration]:
    return [KeyMigration(part, kind, name, old=value, why=why) for name, value in defaults.items()]


#: The one migration table (built-in kinds and methods; plug-ins add theirs with :func:`declare_key_migration`).
KEY_MIGRATIONS: list[KeyMigration] = [
    # problems
    *(KeyMigration("problem", name, "kind", keyed_as="task", why="generated matrix problems were keyed by `task` "
                                                                  "before problem kinds existed")
      for name in ("sensing", "completion")),
    KeyMigration("problem", "supervised", "nonzero", relevant=lambda values: values.get("data") == "sparse_teacher",
                 why="only the sparse teacher reads it"),
    KeyMigration("problem", "supervised", "classes",
                 relevant=lambda values: values.get("data") == "mnist1d"
                 or (values.get("data") == "digits" and list(values.get("classes") or ()) != [3, 8]),
                 why="only the data sets with classes read it, and digits rows were stored before it joined the key "
                     "(with 3 and 8, the pair it still keeps by default)"),
    KeyMigration("problem", "supervised", "inputs", old="gaussian",
                 why="the teacher's input distributions joined after rows were stored (on Gaussian inputs)"),
    KeyMigration("problem", "supervised", "nu", old=None,
                 why="the Student-t inputs' degrees of freedom joined with them (None for every other input)"),
    # models
    KeyMigration("model", "factorization", "kind", old="factorization",
                 why="factorization runs were keyed before model kinds existed"),
    KeyMigration("model", "factorization", "weight_mean", old=0.0, why="the prior's mean joined the key later"),
    *_joined("model", "mlp", {"parametrization": "standard", "bias": False, "abs_a": 0.0, "abs_b": 1.0},
             "MLP fields that joined the key after MLP rows were stored"),
    # methods
    *_joined("method", "gnc", {"keep_samples": 0, "accept": "train_loss", "method": "rejection", "population": 500,
                               "level_fraction": 0.1, "replicates": 8, "kernel": "pcn", "moves": 5},
             "kept draws, the acceptance criterion and subset simulation joined G&C after rows were stored"),
    KeyMigration("method", "gnc", "tie_break", old="none",
                 relevant=lambda values: values.get("method") == "subset" and values.get("accept") == "train_error",
                 why="the margin tie-break of the training error joined subset simulation after rows were stored "
                     "(none: the error count's ladder, as before); only subset runs on the training error read it"),
    *_joined("method", "gnc", {"condition_test": False, "test_eps": None, "loss_bins": 0},
             "the test-conditioned ladder joined subset simulation after rows were stored (off, as before)"),
    KeyMigration("method", "gnc", "independent_ladders", old=False,
                 why="a ladder per replicate joined subset simulation after rows were stored (the shared ladder, as "
                     "before)"),
    *_joined("method", "gd", {"ema_decay": 0.99, "stability_eps": 1e-6, "train_loss_threshold": None,
                              "keep_outputs": False, "trajectory_every": 0, "ntk_metrics": False},
             "settable from sweep files since the method registry (and the observers since they existed)"),
    *_joined("method", "ngd", {"trajectory_every": 0, "ntk_metrics": False},
             "the observers joined NGD after rows were stored"),
    *(KeyMigration("method", name, "kernel_metrics", old=False,
                   why="the kernel-regression observer joined GD and NGD after rows were stored (key format 1 had "
                       "the observer options)")
      for name in ("gd", "ngd")),
    *(KeyMigration("method", name, "initialization", old="random",
                   why="the balanced initialization joined GD and NGD after rows were stored (from the random start)")
      for name in ("gd", "ngd")),
    *(KeyMigration("method", name, "batch_size", old=None,
                   why="minibatches joined GD after rows were stored (None: full-batch steps, as before)")
      for name in ("gd", "ngd")),
    *(KeyMigration("method", name, field, relevant=lambda values: values.get("step_rule") == "adam",
                   why="only step_rule adam reads Adam's settings (they joined GD after rows were stored)")
      for name in ("gd", "ngd") for field in ("adam_beta1", "adam_beta2", "adam_eps")),
    KeyMigration("method", "ngd", "unlabeled", old=None,
                 why="the unlabeled inputs of NGD's Fisher joined NGD after rows were stored (None: the default, "
                     "which left train runs as they were)"),
    KeyMigration("method", "ngd", "flow", old=False,
                 why="natural gradient flow joined NGD after rows were stored (False: the steps, as before)"),
    *(KeyMigration("method", name, "limit_directions", old=False,
                   why="the limit-direction observer joined GD and NGD after rows were stored (it records, never "
                       "changes a run)") for name in ("gd", "ngd")),
    KeyMigration("method", "ngd", "unobserved", old=None,
                 why="unobserved entries in the training Fisher joined NGD after rows were stored (None: none)"),
    KeyMigration("method", "ngd", "damping_scale", old="fixed",
                 why="the curvature-scaled damping joined NGD after rows were stored (fixed: the damping as before)"),
]


def declare_key_migration(migration: KeyMigration) -> KeyMigration:
    """Add a line to :data:`KEY_MIGRATIONS` (a plug-in's field that joined its key later); an exact repeat is a
    no-op, a conflicting one an error."""
    for existing in KEY_MIGRATIONS:
        if (existing.part, existing.kind, existing.field) == (migration.part, migration.kind, migration.field):
            if existing == migration:
                return existing
            raise ValueError(f"{migration.part} {migration.kind!r}: a key migration of {migration.field!r} is "
                             "declared already")
    KEY_MIGRATIONS.append(migration)
    return migration


def canonical(part: str, kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a problem's, model's or method's settings) as they enter run keys, by :data:`KEY_MIGRATIONS`."""
    out = dict(values)
    for migration in KEY_MIGRATIONS:
        if migration.part != part or migration.kind != kind or migration.field not in out:
            continue
        if migration.relevant is not None and not migration.relevant(values):
            del out[migration.field]
        elif migration.old is not UNSET and out[migration.field] == migration.old:
            del out[migration.field]
        elif migration.keyed_as is not None:
            out[migration.keyed_as] = out.pop(migration.field)
    return out


def digest(payload: Mapping[str, Any]) -> str:
    """The 32-hex-digit SHA-256 prefix of ``payload`` as canonical JSON (sorted keys; non-finite floats as text)."""
    text = json.dumps(payload, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serializable: {value!r}")
