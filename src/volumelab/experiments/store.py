"""The results store: one SQLite database per output folder, one row per finished run.

Each (point, seed, method) run is written in its own transaction the moment it
finishes, keyed by a hash of everything it depends on (``run_key``), so an
interrupted sweep resumes without repeating work and a finished sweep reruns as a
no-op. The database uses SQLite's write-ahead log: a killed process loses at most
the run it was computing.
"""

from __future__ import annotations

import io
import json
import logging
import math
import sqlite3
from collections.abc import Mapping, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DATABASE_NAME", "ResultRow", "ResultsStore", "encode_arrays", "utc_now"]

DATABASE_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key TEXT NOT NULL UNIQUE,
    sweep TEXT NOT NULL,
    scale TEXT NOT NULL,
    method TEXT NOT NULL,
    method_type TEXT NOT NULL,
    point INTEGER NOT NULL,
    x TEXT,
    coords TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    gen_loss REAL,
    gen_loss_stderr REAL,
    train_loss REAL,
    metrics TEXT NOT NULL,
    standard_errors TEXT NOT NULL,
    diagnostics TEXT NOT NULL,
    config TEXT NOT NULL,
    seconds REAL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    volumelab_version TEXT NOT NULL,
    torch_version TEXT NOT NULL,
    results_version INTEGER
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, scale);
CREATE TABLE IF NOT EXISTS arrays (
    run_key TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
"""


def encode_arrays(arrays) -> bytes | None:
    """A run's arrays as ``.npz`` bytes (``None`` when it has none)."""
    if not arrays:
        return None
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _finite(value: Any) -> Any:
    """``None`` for missing or non-finite numbers (stored as SQL NULL, never a made-up value)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(value: Any) -> str:
    def clean(item):
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        if isinstance(item, float):
            return _finite(item)
        return item

    return json.dumps(clean(value), sort_keys=True, default=str)


@dataclass(frozen=True)
class ResultRow:
    """One finished run, ready to store (built in the worker, written by the driver)."""

    run_key: str
    sweep: str
    scale: str
    method: str
    method_type: str
    point: int
    x: Any
    coords: dict
    seed: int
    status: str
    metrics: dict
    standard_errors: dict
    diagnostics: dict
    config: dict
    seconds: float | None
    started_at: str
    finished_at: str
    volumelab_version: str
    torch_version: str
    results_version: int | None = None
    #: The run's optional arrays (:attr:`volumelab.RunResult.arrays`) as ``.npz`` bytes.
    arrays: bytes | None = None

    def values(self) -> tuple:
        return (
            self.run_key, self.sweep, self.scale, self.method, self.method_type, self.point,
            json.dumps(self.x), _dumps(self.coords), self.seed, self.status,
            _finite(self.metrics.get("gen_loss")), _finite(self.standard_errors.get("gen_loss")),
            _finite(self.metrics.get("train_loss")), _dumps(self.metrics), _dumps(self.standard_errors),
            _dumps(self.diagnostics), _dumps(self.config), self.seconds, self.started_at, self.finished_at,
            self.volumelab_version, self.torch_version, self.results_version,
        )


_COLUMNS = (
    "run_key, sweep, scale, method, method_type, point, x, coords, seed, status, gen_loss, gen_loss_stderr, "
    "train_loss, metrics, standard_errors, diagnostics, config, seconds, started_at, finished_at, "
    "volumelab_version, torch_version, results_version"
)


class ResultsStore:
    """The SQLite results database of one output folder.

    Args:
        path: The database file, or a folder (then ``<folder>/results.sqlite``).
        create: Create the file and schema if missing (otherwise a missing file is an error).
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        path = Path(path)
        if path.is_dir() or (create and path.suffix != ".sqlite"):
            path = path / DATABASE_NAME
        if not create and not path.is_file():
            raise FileNotFoundError(f"no results database at {str(path)!r}; run a sweep with --out there first")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(str(path), timeout=60)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        if create:
            self._connection.executescript(_SCHEMA)
            self._connection.commit()
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a database written by an older volumelab up to the current schema.

        Rows from before the results version was recorded get ``NULL`` (version unknown:
        never the current one).
        """
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(runs)")}
        if columns and "results_version" not in columns:
            with self._connection:
                self._connection.execute("ALTER TABLE runs ADD COLUMN results_version INTEGER")
        with self._connection:  # stores written before runs kept arrays
            self._connection.execute("CREATE TABLE IF NOT EXISTS arrays (run_key TEXT PRIMARY KEY, data BLOB NOT NULL)")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def existing_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """Keys of the runs already stored (restricted to ``keys`` when given)."""
        found = {row[0] for row in self._connection.execute("SELECT run_key FROM runs")}
        return found if keys is None else found & set(keys)

    def method_settings(self, keys: Iterable[str]) -> dict[str, dict]:
        """The method settings each stored run of ``keys`` recorded (its ``config``'s ``method``), by key."""
        wanted, out = set(keys), {}
        for key, config in self._connection.execute("SELECT run_key, config FROM runs"):
            if key in wanted:
                out[key] = json.loads(config).get("method", {})
        return out

    def delete(self, keys: Iterable[str]) -> int:
        """Delete the stored runs of ``keys`` and their arrays in one transaction; returns how many rows went."""
        keys = [(key,) for key in keys]
        with self._connection:
            before = self.count()
            self._connection.executemany("DELETE FROM runs WHERE run_key = ?", keys)
            self._connection.executemany("DELETE FROM arrays WHERE run_key = ?", keys)
            return before - self.count()

    def migrate_keys(self, renames: Mapping[str, str]) -> int:
        """Rename stored runs (and their arrays) from the old keys of ``renames`` to the new ones, in one
        transaction; returns how many rows were renamed. An old key that is not stored, or whose new key is
        stored already, is left as it is (the new key's row wins)."""
        stored = self.existing_keys()
        moves = [(new, old) for old, new in renames.items() if old in stored and new not in stored]
        if moves:
            with self._connection:
                self._connection.executemany("UPDATE runs SET run_key = ? WHERE run_key = ?", moves)
                self._connection.executemany("UPDATE arrays SET run_key = ? WHERE run_key = ?", moves)
        return len(moves)

    def add(self, rows: Sequence[ResultRow]) -> int:
        """Insert the rows of one finished task in a single transaction; returns how many were new."""
        added = 0
        with self._connection:
            for row in rows:
                try:
                    self._connection.execute(
                        f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 23)})", row.values()
                    )
                    if row.arrays is not None:
                        self._connection.execute("INSERT OR REPLACE INTO arrays (run_key, data) VALUES (?, ?)",
                                                 (row.run_key, sqlite3.Binary(row.arrays)))
                    added += 1
                except sqlite3.IntegrityError:
                    logger.warning("run %s is already stored; keeping the first result", row.run_key)
        return added

    def fetch(self, *, keys: Iterable[str] | None = None) -> list[dict]:
        """Stored rows as dicts (JSON columns decoded), in insertion order."""
        cursor = self._connection.execute("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cursor.description]
        wanted = None if keys is None else set(keys)
        rows = []
        for values in cursor:
            row = dict(zip(names, values))
            if wanted is not None and row["run_key"] not in wanted:
                continue
            for column in ("x", "coords", "metrics", "standard_errors", "diagnostics", "config"):
                row[column] = json.loads(row[column]) if row[column] is not None else None
            rows.append(row)
        return rows

    def arrays(self, run_key: str | None = None) -> dict[str, dict]:
        """Stored arrays by run key (only ``run_key``'s when given), each a dict of NumPy arrays."""
        import numpy as np

        query, parameters = "SELECT run_key, data FROM arrays", ()
        if run_key is not None:
            query, parameters = query + " WHERE run_key = ?", (run_key,)
        out = {}
        for key, data in self._connection.execute(query, parameters):
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                out[key] = {name: archive[name] for name in archive.files}
        return out

    def sweeps(self) -> list[tuple[str, str]]:
        """The distinct ``(sweep, scale)`` pairs stored, in the order first stored."""
        cursor = self._connection.execute("SELECT sweep, scale FROM runs GROUP BY sweep, scale ORDER BY MIN(id)")
        return [(str(a), str(b)) for a, b in cursor]

    def count_other_versions(self, sweep: str, scale: str, results_version: int) -> int:
        """Rows of ``(sweep, scale)`` computed by code of another (or an unknown) results version."""
        return int(self._connection.execute(
            "SELECT COUNT(*) FROM runs WHERE sweep = ? AND scale = ? AND "
            "(results_version IS NULL OR results_version != ?)", (sweep, scale, results_version)).fetchone()[0])

    def count(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
