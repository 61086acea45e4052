"""Stored rows as pandas DataFrames: the frame reports and studies read, and the tidy results table.

Two views of the same rows:

* :func:`rows_to_frame` (and :func:`load_frame`): what the report builder, the plots and the
  studies read. It has ``x`` (the sweep's x coordinate), the grid fields under short names
  (``width``), ``config`` (each row's stored config, a dict) and every column of the row kinds
  present, empty or not.
* :func:`tidy_frame` (what :func:`load_results`, ``results.csv`` and ``volumelab export`` give):
  one column per fact, each documented in docs/experiments.md ("The results table"). Columns
  no row has a value in are left out; settings are flat typed columns with dotted names
  (``model.width``, ``method.<field>``); there is no ``x`` (its values are the x field's column) and
  no dict anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import canonical_path
from .methods import Column, csv_method_columns, get_method, row_kind
from .store import DATABASE_NAME, ResultsStore

if TYPE_CHECKING:  # pandas is imported lazily: ``import volumelab`` stays light
    import pandas as pd

__all__ = ["EXPORT_FORMATS", "export_results", "load_arrays", "load_frame", "load_results", "rows_to_frame",
           "short_names", "tidy_frame"]

#: Columns of every row of the analysis frame, before the methods' own columns ...
_LEADING = ["figure", "scale", "method", "x", "seed", "gen_loss", "gen_loss_stderr", "train_loss", "status"]
#: ... and after them (the grid fields follow under their short names).
_TRAILING = ["point", "seconds", "run_id", "run_key", "finished_at", "volumelab_version", "results_version",
             "stream"]
_FLOAT_COLUMNS = ("gen_loss", "gen_loss_stderr", "train_loss")
#: Integer columns: nullable integers, so a missing count stays empty instead of turning the column into floats.
_COUNT_COLUMNS = ("seed", "point", "run_id", "results_version", "stream")

#: The tidy table's columns that every table has, in order: what identifies a row (the grid fields follow
#: ``point``), its outcome (the methods' columns and the settings that vary follow ``train_loss``), and
#: its record.
_IDENTITY = ("figure", "scale", "stream", "method", "method_type", "point")
_OUTCOME = ("seed", "status", "gen_loss", "gen_loss_stderr", "train_loss")
_RECORD = ("seconds", "run_id", "run_key", "finished_at", "volumelab_version", "results_version")
#: Sections of a stored config whose settings become ``<section>.<field>`` columns, and the top-level
#: settings a row's config may record (the seeds a run and its problem were made from where they are
#: not ``seed``).
_SECTIONS = ("problem", "model", "method")
_TOP_LEVEL = ("problem_seed", "run_seed")
#: Keys of a config's method section that are the ``method`` and ``method_type`` columns' facts.
_METHOD_IDENTITY = ("name", "type")


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


def _frame_columns(row_types: Iterable[str] | None) -> list[str]:
    """Leading columns of the analysis frame: the generic ones and the columns of the methods whose rows are
    ``row_types`` (``None``: every registered method's); grid fields follow under their short names."""
    own = csv_method_columns(row_types)
    return _LEADING + [c.name for c in own if c.name not in _LEADING + _TRAILING] + _TRAILING


def rows_to_frame(rows: list[dict]) -> "pd.DataFrame":
    """The analysis frame: one row per stored run, read by the report builder, the plots and the studies.

    Besides the tidy table's facts (:func:`tidy_frame`) it has ``x`` (the point's x coordinate), the
    grid fields under short names (``width``; :func:`short_names`), ``config`` (the row's stored config,
    a dict) and every column of the kinds of rows present, empty or not; metrics that do not exist are NaN.
    """
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
    leading = _frame_columns(row_types)
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


def _settings_label(value: Any) -> Any:
    """A setting as a cell of the tidy table: a list of integers (a tensor's ``dims``) is ``"4x4x4"`` as in the
    panels, another list its JSON text; any other value is itself."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return "x".join(map(str, value))
        return json.dumps(list(value))
    return value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = _settings_label(value)


def _execution_fields(method_type: Any) -> frozenset[str]:
    """Settings of ``method_type`` that never change its numbers (device, batch size, ...); none when the type
    is not registered here."""
    try:
        return get_method(str(method_type)).settings.execution_fields
    except KeyError:
        return frozenset()


def row_settings(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored row's settings under the tidy table's dotted names.

    ``problem.<field>`` and ``model.<field>`` (the sweep's problem and model at the row's point),
    ``method.<field>`` (its method's settings, less the execution fields, which never change a number,
    and ``name``/``type``, which are the ``method`` and ``method_type`` columns; a method's own model
    fields are ``method.model.<field>``), ``problem_seed`` and ``run_seed`` where the config records
    them, and a grid field that is none of these (``methods.<name>.<field>``) under its path. Lists are
    labels (:func:`_settings_label`).
    """
    config = config or {}
    out: dict[str, Any] = {}
    for section in _SECTIONS:
        values = dict(config.get(section) or {})
        if section == "method":
            skip = set(_METHOD_IDENTITY) | set(_execution_fields(values.get("type")))
            values = {key: value for key, value in values.items() if key not in skip}
        _flatten(section, values, out)
    for name in _TOP_LEVEL:
        if name in config:
            out[name] = config[name]
    for path, value in (config.get("coords") or {}).items():
        out.setdefault(canonical_path(path), _settings_label(value))
    return out


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(values: list[Any], dtype: str = "any") -> "pd.Series":
    """A settings column: nullable integers (``Int64``) for whole numbers, floats, nullable booleans, or
    text; ``dtype`` is a declared :class:`~volumelab.experiments.Column`'s."""
    import pandas as pd

    present = [value for value in values if value is not None]
    if dtype == "count" or (dtype == "any" and present and all(_is_count(v) for v in present)):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("Int64")
    if dtype == "float" or (present and all(_is_count(v) or isinstance(v, float) for v in present)):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype(float)
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype=object).astype("boolean")
    return pd.Series([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], dtype="str")


def _varies(values: Iterable[Any]) -> bool:
    return len({json.dumps(value, sort_keys=True) for value in values}) > 1


#: Prefix of a method's own model fields (``methods.<name>.model`` in a sweep file).
_OVERRIDE = "method.model."


def _compared(name: str, settings: list[dict[str, Any]]) -> list[Any]:
    """The values of setting ``name`` on the rows that have it, compared to tell whether it varies; for a
    method's own model field, the model field each row's run used (its method's, else the sweep's)."""
    if not name.startswith(_OVERRIDE):
        return [row[name] for row in settings if name in row]
    swept = name[len("method."):]
    return [row.get(name, row.get(swept)) for row in settings if name in row or swept in row]


def tidy_frame(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The results table (``results.csv``, :func:`load_results`, ``volumelab export``) of an analysis frame.

    Columns, in order (every one documented in docs/experiments.md, "The results table"):
    ``figure, scale, stream, method, method_type, point``, the grid fields by their paths
    (``model.activation``, ``model.width``), ``seed, status, gen_loss, gen_loss_stderr, train_loss``,
    the columns of the methods whose rows are present that hold a value in some row (each empty on other
    methods' rows), the settings the methods declare as columns (``method.<field>``), every other setting
    whose value is not the same on every row that has it (:func:`row_settings`), then ``seconds, run_id, run_key, finished_at, volumelab_version,
    results_version``. A setting the same on every row is left out (sweep.yaml and resolved.json have it).

    Args:
        frame: An analysis frame (:func:`rows_to_frame`), of one sweep or several.
    """
    import pandas as pd

    configs = list(frame["config"]) if "config" in frame else [None] * len(frame)
    settings = [row_settings(config) for config in configs]
    row_types = list(dict.fromkeys(frame["method_type"].astype(str))) if "method_type" in frame else []
    method_columns = [c for c in csv_method_columns(row_types or None)
                      if c.name not in _LEADING + _TRAILING + ["method_type"]]
    metrics = [c.name for c in method_columns if c.source == "metric" and c.name in frame
               and bool(frame[c.name].notna().any())]
    declared: dict[str, Column] = {}
    for column in method_columns:
        if column.source == "setting":
            declared.setdefault(f"method.{column.key or column.name}", column)
    grid = list(dict.fromkeys(canonical_path(path) for config in configs
                              for path in ((config or {}).get("coords") or {})))
    names = list(dict.fromkeys(name for row in settings for name in row))
    values = {name: [row.get(name) for row in settings] for name in names}
    chosen = [name for name in declared if name in values and any(v is not None for v in values[name])]
    chosen += [name for name in names if name not in grid and _varies(_compared(name, settings))]
    kept: list[str] = []
    for name in chosen:
        # A method's own model field comes with the sweep's, which the other methods' rows used.
        swept = name[len("method."):] if name.startswith(_OVERRIDE) else None
        for column in (swept, name):
            if column in values and column not in grid and column not in kept:
                kept.append(column)
    columns: dict[str, Any] = {}
    for name in _IDENTITY:
        columns[name] = frame[name].reset_index(drop=True)
    for name in grid:
        columns[name] = _typed(values[name])
    for name in (*_OUTCOME, *metrics):
        columns[name] = frame[name].reset_index(drop=True)
    for name in kept:
        columns[name] = _typed(values[name], declared[name].dtype if name in declared else "any")
    for name in _RECORD:
        columns[name] = frame[name].reset_index(drop=True)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def _fetch(directory: str | Path, all_versions: bool) -> list[dict]:
    from .. import _results_version

    rows = []
    for path in _databases(directory):
        with ResultsStore(path, create=False) as store:
            fetched = store.fetch()
        if not all_versions:
            fetched = [row for row in fetched if row.get("results_version") == _results_version.RESULTS_VERSION]
        rows += fetched
    return rows


def load_frame(directory: str | Path, *, all_versions: bool = False) -> "pd.DataFrame":
    """The analysis frame (:func:`rows_to_frame`) of every run stored under ``directory``: what a study judges
    (arguments as :func:`load_results`)."""
    return rows_to_frame(_fetch(directory, all_versions))


def load_results(directory: str | Path, *, all_versions: bool = False) -> "pd.DataFrame":
    """All runs stored under ``directory`` as the results table (:func:`tidy_frame`; ``results.csv`` is the same
    table of one sweep's rows).

    Args:
        directory: A sweep's output folder (holding ``results.sqlite``) or a parent of
            several, e.g. the output of ``volumelab reproduce all`` (``runs/quick`` by default).
        all_versions: Also return rows computed by code of an older
            :data:`~volumelab.RESULTS_VERSION` (they are never mixed in by default).
    """
    return tidy_frame(load_frame(directory, all_versions=all_versions))


#: Formats :func:`export_results` writes (Parquet needs pyarrow: ``pip install 'volumelab[parquet]'``).
EXPORT_FORMATS = ("csv", "parquet")


def export_results(directory: str | Path, path: str | Path, *, file_format: str = "csv") -> "pd.DataFrame":
    """Write the results table of every run stored under ``directory`` (:func:`load_results`) to ``path``.

    Args:
        directory: A sweep's output folder or a parent of several.
        path: The file to write (its folder is created).
        file_format: ``"csv"`` (read it back with ``pandas.read_csv``; the types are the documented ones)
            or ``"parquet"`` (keeps every column's type, ``Int64`` and ``boolean`` included; needs pyarrow).

    Returns:
        The table written.

    Raises:
        ValueError: an unknown format.
        ImportError: Parquet without pyarrow (the message names the extra that installs it).
        FileNotFoundError: no results store in ``directory`` or its subfolders.
    """
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if file_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError("writing Parquet needs pyarrow: pip install 'volumelab[parquet]'") from None
    table = load_results(directory)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False, engine="pyarrow")
    return table


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
