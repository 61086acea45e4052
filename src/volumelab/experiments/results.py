"""Stored rows as a pandas DataFrame, and the ``results.csv`` export."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .methods import csv_method_columns, row_kind
from .store import DATABASE_NAME, ResultsStore

if TYPE_CHECKING:  # pandas is imported lazily: ``import volumelab`` stays light
    import pandas as pd

__all__ = ["CSV_COLUMNS", "csv_columns", "load_arrays", "load_results", "rows_to_frame", "short_names"]

#: Columns of every row, before the methods' own columns ...
_LEADING = ["figure", "scale", "method", "x", "seed", "gen_loss", "gen_loss_stderr", "train_loss", "status"]
#: ... and after them (the grid fields follow under their short names).
_TRAILING = ["point", "seconds", "run_id", "run_key", "finished_at", "volumelab_version", "results_version",
             "stream"]
_FLOAT_COLUMNS = ("gen_loss", "gen_loss_stderr", "train_loss")
#: Integer columns: nullable integers, so a missing count stays empty instead of turning the column into floats.
_COUNT_COLUMNS = ("seed", "point", "run_id", "results_version", "stream")


def csv_columns(row_types: Iterable[str] | None = None) -> list[str]:
    """Leading columns of ``results.csv``: the generic ones and the columns of the methods whose rows are
    ``row_types`` (default: every registered method's); grid fields follow under their short names."""
    own = csv_method_columns(row_types)
    return _LEADING + [c.name for c in own if c.name not in _LEADING + _TRAILING] + _TRAILING


def __getattr__(name: str):
    if name == "CSV_COLUMNS":  # computed: methods registered later add their columns
        return csv_columns()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def short_names(paths: Iterable[str]) -> dict[str, str]:
    """``{"model.width": "width", ...}``; the full path with underscores where last parts clash."""
    paths = list(paths)
    last = [p.split(".")[-1] for p in paths]
    return {p: (s if last.count(s) == 1 else p.replace(".", "_")) for p, s in zip(paths, last)}


def coordinate_label(value):
    """A grid coordinate as a frame cell: a list (a tensor's ``dims``) becomes a hashable label, ``[4, 4, 4]``
    -> ``"4x4x4"`` (integers) or its ``str``; any other value is itself."""
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "x".join(map(str, value))
        return str(list(value))
    return value


def rows_to_frame(rows: list[dict]) -> "pd.DataFrame":
    """One DataFrame row per stored run; metrics that do not exist are NaN."""
    import pandas as pd

    records = []
    all_paths: list[str] = []
    for row in rows:
        for path in row["coords"]:
            if path not in all_paths:
                all_paths.append(path)
    names = short_names(all_paths)
    # Only the columns of the kinds of rows present (a sweep of two methods has no third one's columns);
    # with no rows, every registered method's.
    row_types = list(dict.fromkeys(str(row["method_type"]) for row in rows)) or None
    method_columns = [c for c in csv_method_columns(row_types) if c.name not in _LEADING + _TRAILING]
    for row in rows:
        metrics, settings = row["metrics"], row["config"].get("method", {})
        record = {
            "figure": row["sweep"], "scale": row["scale"], "method": row["method"], "x": row["x"],
            "seed": row["seed"], "gen_loss": row["gen_loss"], "gen_loss_stderr": row["gen_loss_stderr"],
            "train_loss": row["train_loss"], "status": row["status"], "point": row["point"],
            "seconds": row["seconds"], "run_id": row["id"], "run_key": row["run_key"],
            "finished_at": row["finished_at"], "volumelab_version": row["volumelab_version"],
            "results_version": row.get("results_version"),
            # The replicate stream (volumelab run --stream); rows of before streams are stream 0.
            "stream": (row["config"] or {}).get("stream", 0),
        }
        # A method's columns are filled on its own rows only (a column two methods
        # share gets each one's value).
        for column in row_kind(row["method_type"]).columns:
            record[column.name] = column.value(metrics, settings)
        for path, value in row["coords"].items():
            record[names[path]] = coordinate_label(value)
        record["method_type"] = row["method_type"]
        record["config"] = row["config"]
        records.append(record)
    leading = csv_columns(row_types)
    columns = leading + [names[p] for p in all_paths if names[p] not in leading] + ["method_type", "config"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    floats = list(_FLOAT_COLUMNS) + [c.name for c in method_columns if c.dtype == "float"]
    counts = list(_COUNT_COLUMNS) + [c.name for c in method_columns if c.dtype == "count"]
    for column in floats:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in counts:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    numeric_x = pd.to_numeric(frame["x"], errors="coerce")
    if numeric_x.notna().all():
        frame["x"] = numeric_x
    return frame


def _databases(directory: str | Path) -> list[Path]:
    """``directory``'s results database, or those of its subfolders."""
    directory = Path(directory)
    databases = [directory / DATABASE_NAME] if (directory / DATABASE_NAME).is_file() else sorted(
        directory.glob(f"*/{DATABASE_NAME}"))
    if not databases:
        raise FileNotFoundError(f"no {DATABASE_NAME} in {str(directory)!r} or its subfolders")
    return databases


def load_results(directory: str | Path, *, all_versions: bool = False) -> "pd.DataFrame":
    """All runs stored under ``directory`` as a DataFrame (the same columns as ``results.csv``).

    Args:
        directory: A sweep's output folder (holding ``results.sqlite``) or a parent of
            several, e.g. the output of ``volumelab reproduce all`` (``runs/quick`` by default).
        all_versions: Also return rows computed by code of an older
            :data:`~volumelab.RESULTS_VERSION` (they are never mixed in by default).
    """
    from .. import _results_version

    import pandas as pd

    databases = _databases(directory)
    frames = []
    for path in databases:
        with ResultsStore(path, create=False) as store:
            rows = store.fetch()
        if not all_versions:
            rows = [row for row in rows if row.get("results_version") == _results_version.RESULTS_VERSION]
        frames.append(rows_to_frame(rows))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def load_arrays(directory: str | Path, run_key: str | None = None) -> dict:
    """The arrays runs kept (accepted draws, final weights: the methods' keep settings), from a sweep's store.

    Args:
        directory: A sweep's output folder (holding ``results.sqlite``) or a parent of several.
        run_key: One run's key (the ``run_key`` column of :func:`load_results`).

    Returns:
        With ``run_key``: that run's arrays, a dict of NumPy arrays (a ``KeyError`` when it
        kept none). Without: ``{run_key: arrays}`` for every run that kept some.
    """
    databases = _databases(directory)
    found: dict = {}
    for path in databases:
        with ResultsStore(path, create=False) as store:
            found.update(store.arrays(run_key))
    if run_key is None:
        return found
    if run_key not in found:
        raise KeyError(f"run {run_key!r} kept no arrays in {str(directory)!r} (set keep_samples / keep_outputs)")
    return found[run_key]
