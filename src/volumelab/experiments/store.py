"""The results store: one SQLite database per output folder, one row per finished run.

Each (point, seed, method) run is written in its own transaction the moment it
finishes, keyed by a hash of everything it depends on (``run_key``), so an
interrupted sweep resumes without repeating work and a finished sweep reruns as a
no-op. The database uses SQLite's write-ahead log: a killed process loses at most
the run it was computing.

**Integrity.** Every row carries a checksum of its content (every column but its id and
key, :func:`row_checksum`; a run's arrays carry their own), written with it and verified
whenever it is read: a row that fails (a flipped bit in a value or in its JSON, text that
is no longer UTF-8, a run key that differs from the copy its table's unique index holds)
is never used. It is reported, left out of every output and, when a sweep runs, deleted
with the rows stored beside it so its run computes again. A database
SQLite cannot read (truncated, overwritten, a table gone) raises :class:`StoreError`
naming the file and the way out: :func:`check_store` says what is intact and
:func:`repair_store` salvages every intact row into a new database, keeping the damaged
file as ``results.sqlite.damaged-<time>``; the next run recomputes the rest. Rows that
predate checksums get theirs when a volumelab with checksums first opens the store.
A store holding runs of a newer results version (written by a newer volumelab) is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

from ..errors import StoreError

__all__ = ["DATABASE_NAME", "Merged", "ResultRow", "ResultsStore", "StoreCheck", "check_store", "encode_arrays", "repair_store",
           "row_checksum", "utc_now"]

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
    results_version INTEGER,
    checksum TEXT
);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep, scale);
CREATE TABLE IF NOT EXISTS arrays (
    run_key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    checksum TEXT
);
"""

#: The columns a row's checksum covers, in order: all but ``id`` (SQLite's) and ``run_key`` (which a key
#: migration renames; a damaged key is caught by comparing it with the unique index's copy, :data:`KEY_MISMATCH`).
_CHECKED = ("sweep", "scale", "method", "method_type", "point", "x", "coords", "seed", "status", "gen_loss",
            "gen_loss_stderr", "train_loss", "metrics", "standard_errors", "diagnostics", "config", "seconds",
            "started_at", "finished_at", "volumelab_version", "torch_version", "results_version")
_JSON_COLUMNS = ("x", "coords", "metrics", "standard_errors", "diagnostics", "config")
#: Why a row fails when its run key differs from its table's unique index's copy (the key was damaged).
KEY_MISMATCH = "its run key does not match the store's index of keys"


def row_checksum(values: Sequence[Any]) -> str:
    """The checksum of a row's checked values (:data:`_CHECKED`, in order): SHA-256 of their JSON (floats by
    their shortest round-trip text, so a value read back from SQLite gives the same text), 32 hex digits."""
    text = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _blob_checksum(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()[:32]


def _unique_key_index(connection: sqlite3.Connection, table: str) -> dict[int, str | None]:
    """``{rowid: run_key}`` as the unique index of ``table``'s ``run_key`` holds them (what each row was stored
    under, whatever the table's copy says now; ``None`` where the index's copy is not UTF-8), read from the index
    alone (a covering read); empty when the table has no such index. An index SQLite cannot read raises."""
    found: dict[int, str | None] = {}
    indexes = [_text(name) for (name,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", (table,))]
    for name in filter(None, indexes):
        columns = [_text(row[2]) for row in connection.execute(f"PRAGMA index_info('{name}')")]
        if columns == ["run_key"]:
            for raw, row_id in connection.execute(f"SELECT run_key, rowid FROM {table} INDEXED BY \"{name}\""):
                found[row_id] = _text(raw)
    return found


def _damaged(path: Path, reason: str) -> StoreError:
    folder = path.parent
    return StoreError(reason, f"the results store {path} is damaged ({reason}); 'volumelab store check {folder}' shows "
                      f"what is intact and 'volumelab store repair {folder}' salvages it (the damaged file is kept, "
                      "the lost runs rerun on the next run)")


def _unreadable(exc: BaseException) -> bool:
    """An SQLite error that means the file is damaged (not a lock, not a constraint)."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
        return False
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in text for word in ("malformed", "not a database", "no such table", "disk i/o",
                                             "corrupt", "decode"))
    return isinstance(exc, sqlite3.DatabaseError)


def _guarded(method):
    """Turn SQLite's "this file is damaged" errors of a store method into one :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if _unreadable(exc):
                raise _damaged(self.path, str(exc)) from None
            raise

    return wrapper


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
        """The row's column values in :data:`_COLUMNS` order, its checksum last.

        A row with arrays records their checksum in its diagnostics (``arrays_checksum``), so a run whose arrays
        were lost (a damaged page, a repair that could not reach them) is known to be incomplete and reruns.
        """
        diagnostics = self.diagnostics
        if self.arrays is not None:
            diagnostics = {**diagnostics, "arrays_checksum": _blob_checksum(self.arrays)}
        checked = (
            self.sweep, self.scale, self.method, self.method_type, self.point,
            json.dumps(self.x), _dumps(self.coords), self.seed, self.status,
            _finite(self.metrics.get("gen_loss")), _finite(self.standard_errors.get("gen_loss")),
            _finite(self.metrics.get("train_loss")), _dumps(self.metrics), _dumps(self.standard_errors),
            _dumps(diagnostics), _dumps(self.config), self.seconds, self.started_at, self.finished_at,
            self.volumelab_version, self.torch_version, self.results_version,
        )
        return (self.run_key, *checked, row_checksum(checked))


_COLUMNS = "run_key, " + ", ".join(_CHECKED) + ", checksum"


class ResultsStore:
    """The SQLite results database of one output folder.

    Args:
        path: The database file, or a folder (then ``<folder>/results.sqlite``).
        create: Create the file and schema if missing (otherwise a missing file is an error).
        journal: ``"wal"`` (SQLite's write-ahead log: readers never wait for the writer) or ``"delete"`` (a
            rollback journal), for a file on a network filesystem, where the write-ahead log's shared memory does
            not work (:mod:`volumelab.experiments.shards`).

    Raises:
        StoreError: the file is damaged (see the module docstring) or was written by a newer volumelab.
    """

    def __init__(self, path: str | Path, *, create: bool = True, journal: str = "wal") -> None:
        if journal not in ("wal", "delete"):
            raise ValueError(f"journal must be 'wal' or 'delete', got {journal!r}")
        self.journal = journal
        path = Path(path)
        if path.is_dir() or (create and path.suffix != ".sqlite"):
            path = path / DATABASE_NAME
        if not create and not path.is_file():
            raise FileNotFoundError(f"no results database at {str(path)!r}; run a sweep with --out there first")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        existed = path.is_file() and path.stat().st_size > 0
        self._connection = sqlite3.connect(str(path), timeout=60)
        # Text comes back as bytes and is decoded row by row, so one damaged row cannot stop a whole read.
        self._connection.text_factory = bytes
        try:
            self._open(create, existed)
        except BaseException:
            self._connection.close()
            raise

    @_guarded
    def _open(self, create: bool, existed: bool) -> None:
        tables = {_text(name) for (name,) in self._connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if existed and "runs" not in tables:
            raise _damaged(self.path, "it has no table of runs" + (" (it was deleted)" if tables else ""))
        self._connection.execute(f"PRAGMA journal_mode={self.journal.upper()}")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        if existed:
            check = self._connection.execute("PRAGMA quick_check").fetchone()[0]
            check = _text(check)
            if check != "ok":
                raise _damaged(self.path, f"SQLite's check: {check}")
        if create:
            self._connection.executescript(_SCHEMA)
            self._connection.commit()
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Bring a database written by an older volumelab up to the current schema.

        Rows from before the results version was recorded get ``NULL`` (version unknown:
        never the current one). Rows and arrays from before checksums get theirs now, from their content as it
        reads now (nothing older can verify it).
        """
        columns = {_text(row[1]) for row in self._connection.execute("PRAGMA table_info(runs)")}
        with self._connection:
            if columns and "results_version" not in columns:
                self._connection.execute("ALTER TABLE runs ADD COLUMN results_version INTEGER")
            self._connection.execute("CREATE TABLE IF NOT EXISTS arrays (run_key TEXT PRIMARY KEY, data BLOB NOT NULL)")
            array_columns = {_text(row[1]) for row in self._connection.execute("PRAGMA table_info(arrays)")}
            if "checksum" not in array_columns:
                self._connection.execute("ALTER TABLE arrays ADD COLUMN checksum TEXT")
            if columns and "checksum" not in columns:
                self._connection.execute("ALTER TABLE runs ADD COLUMN checksum TEXT")
            unsummed = list(self._connection.execute(
                f"SELECT id, {', '.join(_CHECKED)} FROM runs WHERE checksum IS NULL"))
            for row_id, *raw in unsummed:
                values = _decoded(raw)
                if values is not None:
                    self._connection.execute("UPDATE runs SET checksum = ? WHERE id = ?",
                                             (row_checksum(values), row_id))
            for key, data in list(self._connection.execute("SELECT run_key, data FROM arrays WHERE checksum IS NULL")):
                self._connection.execute("UPDATE arrays SET checksum = ? WHERE run_key = ?",
                                         (_blob_checksum(data), _text(key)))
        if unsummed:
            logger.info("%s: %d rows stored before checksums got theirs", self.path, len(unsummed))

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reading, verified
    def _checked(self) -> Iterator[tuple[int, str, list | None, dict | None, str | None, str | None]]:
        """Every stored row as ``(id, run_key, its checked values as stored, its JSON columns decoded, its checksum,
        why it failed or None)``, in insertion order; values and JSON are ``None`` for a row that failed.

        A row is used only when its text decodes, its run key is the one the unique index holds for it (the
        checksum leaves the key out, so a key damaged into other valid text is caught here), its JSON parses and
        its checksum matches its content.
        """
        with self._snapshot():
            yield from self._checked_rows()

    @contextlib.contextmanager
    def _snapshot(self):
        """One read transaction (unless one is open already), so that an index and its table read in it show the
        same state of the file even while another process writes (a key renamed between the two reads would
        otherwise read as damage)."""
        opened = not self._connection.in_transaction
        if opened:
            self._connection.execute("BEGIN")
        try:
            yield
        finally:
            if opened and self._connection.in_transaction:
                self._connection.execute("COMMIT")

    def _checked_rows(self) -> Iterator[tuple[int, str, list | None, dict | None, str | None, str | None]]:
        indexed = self._index_keys("runs")
        cursor = self._connection.execute(f"SELECT id, run_key, {', '.join(_CHECKED)}, checksum FROM runs ORDER BY id")
        for row_id, raw_key, *raw, checksum in cursor:
            key = _text(raw_key)
            values = _decoded(raw)
            if key is None or values is None:
                yield row_id, key or f"<row {row_id}>", None, None, None, "text that is not UTF-8"
                continue
            if row_id in indexed and indexed[row_id] != key:
                yield row_id, key, None, None, None, KEY_MISMATCH
                continue
            checksum = _text(checksum)
            if checksum != row_checksum(values):
                yield row_id, key, None, None, None, "its checksum does not match its content"
                continue
            try:
                decoded = {column: json.loads(value) if value is not None else None
                           for column, value in zip(_CHECKED, values) if column in _JSON_COLUMNS}
            except ValueError:
                yield row_id, key, None, None, None, "JSON that does not parse"
                continue
            yield row_id, key, values, decoded, checksum, None

    @_guarded
    def _scan(self) -> list[tuple[dict | None, str, str | None]]:
        """Every stored row as ``(row or None, run_key, why it failed or None)``, in insertion order (see
        :meth:`_checked`)."""
        out = []
        for row_id, key, values, decoded, _, why in self._checked():
            row = None if why else {"id": row_id, "run_key": key, **dict(zip(_CHECKED, values)), **decoded}
            out.append((row, key, why))
        return out

    @_guarded
    def verified_raw(self) -> tuple[list[dict], dict[str, bytes], dict[str, str]]:
        """What a copy of this store may take: ``(intact rows as stored, {"run_key", <checked columns>}; their intact
        arrays by run key; the rows and arrays that fail verification, with why)``."""
        rows, damaged, expectations = [], {}, []
        for _, key, values, decoded, _, why in self._checked():
            if why:
                damaged[key] = why
            else:
                rows.append({"run_key": key, **dict(zip(_CHECKED, values))})
                expectations.append((key, decoded["diagnostics"]))
        damaged.update(self._array_failures(expectations))
        rows = [row for row in rows if row["run_key"] not in damaged]
        wanted = {row["run_key"] for row in rows}
        arrays = {_text(key): bytes(data) for key, data in self._connection.execute("SELECT run_key, data FROM arrays")
                  if _text(key) in wanted}
        return rows, arrays, damaged

    @_guarded
    def _array_failures(self, rows: Iterable[tuple[str, dict | None]]) -> dict[str, str]:
        """Run keys whose arrays fail: a stored blob whose checksum does not match or whose key differs from the
        unique index's copy, or a row (``(run key, its decoded diagnostics)`` of ``rows``) that names the checksum
        of arrays the store does not hold."""
        failed, held = {}, {}
        with self._snapshot():
            indexed = self._index_keys("arrays")
            for row_id, key, data, checksum in self._connection.execute(
                    "SELECT rowid, run_key, data, checksum FROM arrays"):
                key = _text(key) or "?"
                if row_id in indexed and indexed[row_id] != key:
                    failed[key] = KEY_MISMATCH
                elif data is None or _text(checksum) != _blob_checksum(data):
                    failed[key] = "its arrays' checksum does not match"
                else:
                    held[key] = _text(checksum)
        for key, diagnostics in rows:
            expected = (diagnostics or {}).get("arrays_checksum") if isinstance(diagnostics, dict) else None
            if expected and key not in failed and held.get(key) != expected:
                failed[key] = "its arrays are missing" if key not in held else "its arrays are not the ones it had"
        return failed

    def _scan_failures(self, scan: list[tuple[dict | None, str, str | None]]) -> dict[str, str]:
        """Every failure of a :meth:`_scan`: its rows that fail, and the arrays of its rows that do."""
        failed = {key: why for row, key, why in scan if row is None}
        failed.update(self._array_failures((key, row["diagnostics"]) for row, key, _ in scan if row is not None))
        return failed

    def damaged_rows(self) -> dict[str, str]:
        """Stored rows (by run key) that fail verification, with why: never used, rerun by the next sweep."""
        return self._scan_failures(self._scan())

    def _intact(self) -> list[dict]:
        scan = self._scan()
        rows = [row for row, _, _ in scan if row is not None]
        failed = self._scan_failures(scan)
        if failed:
            logger.warning("%s: %d stored rows fail verification and are not used (%s); the next run recomputes "
                           "them ('volumelab store check %s' lists them)", self.path, len(failed),
                           next(iter(failed.values())), self.path.parent)
            rows = [row for row in rows if row["run_key"] not in failed]
        return rows

    def existing_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """Keys of the runs already stored and intact (restricted to ``keys`` when given)."""
        found = {row["run_key"] for row in self._intact()}
        return found if keys is None else found & set(keys)

    def method_settings(self, keys: Iterable[str]) -> dict[str, dict]:
        """The method settings each stored run of ``keys`` recorded (its ``config``'s ``method``), by key."""
        wanted = set(keys)
        return {row["run_key"]: (row["config"] or {}).get("method", {}) for row in self._intact()
                if row["run_key"] in wanted}

    @_guarded
    def discard_damaged(self) -> int:
        """Delete the rows that fail verification, with the rows stored beside them (a run's own row and its
        extra rows go together), so their runs compute again; returns how many rows went."""
        scan = self._scan()
        failed = self._scan_failures(scan)
        if not failed:
            return 0
        # Damaged bytes in a table leave the indexes holding the values as they were. A row whose run key itself
        # is damaged (named "<row ID>" when it is not UTF-8, or under a key that is not its own) has its key as it
        # was read back from the unique index (a covering read), so its run's other rows go with it; then the
        # indexes are rebuilt from the table (deleting against a stale entry reads as a malformed file, and the
        # stale key would refuse the rerun's row as "already stored"), and the row goes by its id.
        garbled = {row_id for row_id, key, *_, why in self._checked()
                   if why and (key == f"<row {row_id}>" or why == KEY_MISMATCH)}
        indexed = self._index_keys("runs") if garbled else {}
        recovered = {row_id: indexed[row_id] for row_id in garbled if indexed.get(row_id) is not None}
        bases = {key.split(":", 1)[0] for key in failed if not key.startswith("<row ")}
        bases |= {key.split(":", 1)[0] for key in recovered.values()}
        doomed = {key for _, key, _ in scan if key.split(":", 1)[0] in bases} | set(failed)
        logger.warning("%s: %d stored rows failed verification (%s); they and the rows stored with them (%d in "
                       "all) are deleted and run again", self.path, len(failed), next(iter(failed.values())),
                       len(doomed))
        if any(why in ("text that is not UTF-8", KEY_MISMATCH) for why in failed.values()):
            try:
                self._connection.execute("REINDEX")
            except sqlite3.IntegrityError as exc:  # a damaged key turned into another run's: two rows hold it
                raise _damaged(self.path, f"a damaged run key equals another run's ({exc})") from exc
        removed = self.delete(doomed)
        if garbled:
            with self._connection:
                before = self.count()
                self._connection.executemany("DELETE FROM runs WHERE id = ?", [(row_id,) for row_id in garbled])
                removed += before - self.count()
        return removed

    def _index_keys(self, table: str) -> dict[int, str | None]:
        return _unique_key_index(self._connection, table)

    @_guarded
    def delete(self, keys: Iterable[str]) -> int:
        """Delete the stored runs of ``keys`` and their arrays in one transaction; returns how many rows went."""
        keys = [(key,) for key in keys]
        with self._connection:
            before = self.count()
            self._connection.executemany("DELETE FROM runs WHERE run_key = ?", keys)
            self._connection.executemany("DELETE FROM arrays WHERE run_key = ?", keys)
            return before - self.count()

    @_guarded
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

    @_guarded
    def add(self, rows: Sequence[ResultRow]) -> int:
        """Insert the rows of one finished task in a single transaction; returns how many were new."""
        added = 0
        with self._connection:
            for row in rows:
                try:
                    self._connection.execute(
                        f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * (len(_CHECKED) + 2))})", row.values()
                    )
                    if row.arrays is not None:
                        self._connection.execute(
                            "INSERT OR REPLACE INTO arrays (run_key, data, checksum) VALUES (?, ?, ?)",
                            (row.run_key, sqlite3.Binary(row.arrays), _blob_checksum(row.arrays)))
                    added += 1
                except sqlite3.IntegrityError:
                    logger.warning("run %s is already stored; keeping the first result", row.run_key)
        return added

    @_guarded
    def merge(self, source: str | Path) -> "Merged":
        """Copy into this store every intact row (and its arrays) of the results database ``source`` that this one
        does not hold yet, in one transaction, each row with the checksum it was written with (verified first).

        Idempotent: merging the same source again adds nothing. A key this store holds already keeps its row (the
        first result, as :meth:`add`). A source SQLite cannot read as a whole is salvaged row by row, as
        :func:`repair_store` does; its damaged rows are counted, never copied.
        """
        source = Path(source)
        try:
            with ResultsStore(source, create=False, journal="delete") as other:
                rows, arrays, damaged = other.verified_raw()
        except StoreError:
            rows, arrays, damaged, _ = _salvage(_database(source))
        with self._connection:
            added = _insert_raw(self._connection, rows, arrays)
        return Merged(source, added, len(rows) - added, dict(damaged))

    def fetch(self, *, keys: Iterable[str] | None = None) -> list[dict]:
        """Stored intact rows as dicts (JSON columns decoded), in insertion order; rows that fail verification
        are left out (and reported)."""
        wanted = None if keys is None else set(keys)
        return [row for row in self._intact() if wanted is None or row["run_key"] in wanted]

    @_guarded
    def arrays(self, run_key: str | None = None) -> dict[str, dict]:
        """Stored arrays by run key (only ``run_key``'s when given), each a dict of NumPy arrays; arrays that fail
        their checksum are left out."""
        import numpy as np

        query, parameters = "SELECT run_key, data, checksum FROM arrays", ()
        if run_key is not None:
            query, parameters = query + " WHERE run_key = ?", (run_key,)
        out = {}
        for key, data, checksum in self._connection.execute(query, parameters):
            key = _text(key)
            if key is None or _text(checksum) != _blob_checksum(data):
                logger.warning("%s: the arrays of run %s fail their checksum and are not used", self.path, key)
                continue
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                out[key] = {name: archive[name] for name in archive.files}
        return out

    def sweeps(self) -> list[tuple[str, str]]:
        """The distinct ``(sweep, scale)`` pairs stored, in the order first stored."""
        return list(dict.fromkeys((str(row["sweep"]), str(row["scale"])) for row in self._intact()))

    def count_other_versions(self, sweep: str, scale: str, results_version: int) -> int:
        """Rows of ``(sweep, scale)`` computed by code of another (or an unknown) results version."""
        return sum(1 for row in self._intact() if row["sweep"] == sweep and row["scale"] == scale
                   and row["results_version"] != results_version)

    def newest_results_version(self) -> int | None:
        """The largest results version of the stored rows (``None`` when none records one)."""
        versions = [row["results_version"] for row in self._intact() if row["results_version"] is not None]
        return max(versions) if versions else None

    @_guarded
    def count(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def _text(value: Any) -> str | None:
    """A TEXT value read as bytes, decoded (``None`` when it is not UTF-8); other values as they are."""
    if isinstance(value, (bytes, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value


def _decoded(raw: Sequence[Any]) -> list[Any] | None:
    """A row's checked values with their text decoded; ``None`` when some text is not UTF-8."""
    values = []
    for value in raw:
        if isinstance(value, (bytes, memoryview)):
            value = _text(value)
            if value is None:
                return None
        values.append(value)
    return values


def _insert_raw(connection: sqlite3.Connection, rows: Sequence[Mapping[str, Any]], arrays: Mapping[str, bytes]) -> int:
    """Insert verified rows as stored (``{"run_key", <checked columns>}``, their checksum recomputed from the same
    values) and the arrays of those that were new, keeping any row the database holds already; returns how many
    rows were new. The caller holds the transaction."""
    added = 0
    for row in rows:
        values = [row[name] for name in _CHECKED]
        cursor = connection.execute(
            f"INSERT OR IGNORE INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * (len(_CHECKED) + 2))})",
            (row["run_key"], *values, row_checksum(values)))
        if cursor.rowcount != 1:
            continue
        added += 1
        data = arrays.get(row["run_key"])
        if data is not None:
            connection.execute("INSERT OR REPLACE INTO arrays (run_key, data, checksum) VALUES (?, ?, ?)",
                               (row["run_key"], sqlite3.Binary(data), _blob_checksum(data)))
    return added


@dataclass
class Merged:
    """What :meth:`ResultsStore.merge` did with one source database.

    Attributes:
        source: The database merged.
        added: Rows copied (new here).
        present: Intact rows whose key this store held already (kept as they were).
        damaged: The source's rows that failed verification (never copied), by run key, with why.
    """

    source: Path
    added: int
    present: int
    damaged: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ check and repair
@dataclass
class StoreCheck:
    """What :func:`check_store` or :func:`repair_store` found in a results database.

    Attributes:
        path: The database file.
        readable: SQLite can open and read it as a whole (no :class:`StoreError`).
        error: Why not, when it cannot.
        rows: Rows found (intact or not; for an unreadable file, those reached row by row).
        intact: Rows whose content matches their checksum (the ones a repair keeps).
        damaged: Rows that fail, by run key, with why.
        arrays: Intact arrays of intact rows.
        sweeps: Intact rows per ``(sweep, scale)``.
        kept_as: Where :func:`repair_store` moved the damaged file (``None`` when it moved nothing).
    """

    path: Path
    readable: bool
    error: str | None = None
    rows: int = 0
    intact: int = 0
    damaged: dict[str, str] = field(default_factory=dict)
    arrays: int = 0
    sweeps: dict[str, int] = field(default_factory=dict)
    kept_as: Path | None = None

    @property
    def ok(self) -> bool:
        return self.readable and not self.damaged

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "readable": self.readable, "error": self.error,
                "rows": self.rows, "intact": self.intact, "damaged": dict(self.damaged), "arrays": self.arrays,
                "sweeps": dict(self.sweeps), "kept_as": str(self.kept_as) if self.kept_as else None}


def _database(path: str | Path) -> Path:
    path = Path(path)
    path = path / DATABASE_NAME if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no results database at {str(path)!r}")
    return path


def _salvage(path: Path) -> tuple[list[dict], dict[str, bytes], dict[str, str], int]:
    """Every row of ``path`` that can still be read and verified, through SQLite row by row and then straight from
    the file's pages (a broken b-tree loses no row whose page is intact): ``(rows, arrays by run key, damaged rows
    with why, rows found)``."""
    rows, arrays, damaged, found = _salvage_sql(path)
    found = max(found, _salvage_pages(path, rows, arrays, damaged))
    kept = []
    for row in rows:  # a run whose arrays were not reached is incomplete: it reruns
        try:
            expected = (json.loads(row["diagnostics"]) or {}).get("arrays_checksum")
        except (TypeError, ValueError, AttributeError):
            expected = None
        data = arrays.get(row["run_key"])
        if expected and (data is None or _blob_checksum(data) != expected):
            damaged[row["run_key"]] = "its arrays were lost"
            arrays.pop(row["run_key"], None)
        else:
            kept.append(row)
    return kept, arrays, damaged, found


def _salvage_sql(path: Path) -> tuple[list[dict], dict[str, bytes], dict[str, str], int]:
    """Every row of ``path`` that can still be read and verified, read row by row (a damaged page loses only
    its rows): ``(rows, arrays by run key, damaged rows with why, rows found)``. Rows stored before checksums
    existed are kept when their text decodes and their JSON parses."""
    rows, arrays, damaged, found = [], {}, {}, 0
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows, arrays, damaged, found
    connection.text_factory = bytes
    try:
        try:
            columns = [_text(row[1]) for row in connection.execute("PRAGMA table_info(runs)")]
        except sqlite3.Error:
            return rows, arrays, damaged, found
        wanted = [name for name in ("run_key", *_CHECKED, "checksum") if name in columns]
        ids: set[int] = set()
        for query in ("SELECT seq FROM sqlite_sequence WHERE name = 'runs'", "SELECT MAX(id) FROM runs"):
            try:
                top = connection.execute(query).fetchone()
                if top and top[0]:
                    ids.update(range(1, int(top[0]) + 1))
            except sqlite3.Error:
                pass
        try:
            for (row_id,) in connection.execute("SELECT id FROM runs"):
                ids.add(int(row_id))
        except sqlite3.Error:
            pass
        try:
            indexed = _unique_key_index(connection, "runs")
        except sqlite3.Error:
            indexed = {}  # the index is unreadable: the keys are kept as the table has them
        for row_id in sorted(ids):
            try:
                raw = connection.execute(f"SELECT {', '.join(wanted)} FROM runs WHERE id = ?", (row_id,)).fetchone()
            except sqlite3.Error as exc:
                damaged[f"<row {row_id}>"] = f"unreadable ({exc})"
                continue
            if raw is None:
                continue
            found += 1
            record = dict(zip(wanted, raw))
            key = _text(record.get("run_key"))
            values = _decoded([record.get(name) for name in _CHECKED])
            if key is None or values is None:
                damaged[key or f"<row {row_id}>"] = "text that is not UTF-8"
                continue
            if row_id in indexed and indexed[row_id] != key:
                damaged[key] = KEY_MISMATCH
                continue
            checksum = _text(record.get("checksum"))
            if checksum is not None and checksum != row_checksum(values):
                damaged[key] = "its checksum does not match its content"
                continue
            try:
                for name, value in zip(_CHECKED, values):
                    if name in _JSON_COLUMNS and value is not None:
                        json.loads(value)
            except ValueError:
                damaged[key] = "JSON that does not parse"
                continue
            rows.append({"run_key": key, **dict(zip(_CHECKED, values))})
        for row in rows:
            try:
                hit = connection.execute("SELECT data, checksum, run_key FROM arrays WHERE run_key = ?",
                                         (row["run_key"],)).fetchone()
            except sqlite3.Error:
                continue
            # The lookup goes through the index: the table's own copy of the key must say the same.
            if (hit is not None and hit[0] is not None and _text(hit[2]) == row["run_key"]
                    and _text(hit[1]) in (None, _blob_checksum(hit[0]))):
                arrays[row["run_key"]] = bytes(hit[0])
    finally:
        connection.close()
    return rows, arrays, damaged, found


def _salvage_pages(path: Path, rows: list[dict], arrays: dict[str, bytes], damaged: dict[str, str]) -> int:
    """Add the rows (and arrays) read straight from ``path``'s table leaf pages (:mod:`._pages`) that SQLite could
    not reach through a broken b-tree; only rows whose checksum verifies. Returns how many rows it found."""
    from ._pages import leaf_records

    have = {row["run_key"] for row in rows}
    # A key SQLite read and found to differ from its index's copy is damaged: its page holds the same wrong key.
    refused = {key for key, why in damaged.items() if why == KEY_MISMATCH}
    width = 2 + len(_CHECKED) + 1  # id (stored as NULL), run_key, the checked columns, checksum
    found: dict[str, dict] = {}
    seen = 0
    blobs: dict[str, bytes] = {}
    for record in leaf_records(path):
        if len(record) == 3 and isinstance(record[0], str) and isinstance(record[1], bytes):
            if isinstance(record[2], str) and record[2] == _blob_checksum(record[1]) and record[0] not in refused:
                blobs[record[0]] = record[1]
            continue
        if len(record) != width or record[0] is not None or not isinstance(record[1], str):
            continue
        key, values, checksum = record[1], record[2:-1], record[-1]
        seen += 1
        if key in refused:
            continue
        if checksum != row_checksum(values):
            if key not in have:
                damaged.setdefault(key, "its checksum does not match its content")
            continue
        try:
            for name, value in zip(_CHECKED, values):
                if name in _JSON_COLUMNS and value is not None:
                    json.loads(value)
        except (TypeError, ValueError):
            continue
        row = {"run_key": key, **dict(zip(_CHECKED, values))}
        if key in found and str(found[key]["finished_at"]) >= str(row["finished_at"]):
            continue
        found[key] = row
    for key, row in found.items():
        if key not in have:
            rows.append(row)
            damaged.pop(key, None)
    for key in {row["run_key"] for row in rows} - set(arrays):
        if key in blobs:
            arrays[key] = blobs[key]
    return seen


def _tally(check: StoreCheck, rows: list[dict]) -> None:
    check.intact = len(rows)
    for row in rows:
        name = f"{row['sweep']} ({row['scale']})"
        check.sweeps[name] = check.sweeps.get(name, 0) + 1


def check_store(path: str | Path) -> StoreCheck:
    """What is intact in the results database at ``path`` (a file or its folder) and what is not; changes nothing."""
    path = _database(path)
    try:
        with ResultsStore(path, create=False) as store:
            scan = store._scan()
            check = StoreCheck(path, True, rows=len(scan))
            check.damaged = store.damaged_rows()
            _tally(check, [row for row, key, _ in scan if row is not None and key not in check.damaged])
            check.arrays = sum(1 for key in store.arrays() if key not in check.damaged)
            return check
    except StoreError as exc:
        rows, arrays, damaged, found = _salvage(path)
        check = StoreCheck(path, False, error=exc.reason,
                           rows=found, damaged=damaged, arrays=len(arrays))
        _tally(check, rows)
        return check


def repair_store(path: str | Path) -> StoreCheck:
    """Salvage every intact row (and its arrays) of the results database at ``path`` into a new database in its
    place, keeping the damaged file as ``results.sqlite.damaged-<UTC time>``; the next run of the sweep
    recomputes the rest. A database that is intact is left as it is (``kept_as`` is then ``None``)."""
    path = _database(path)
    check = check_store(path)
    if check.ok:
        return check
    rows, arrays, damaged, found = _salvage(path)
    fresh = path.with_name("repairing-" + path.name)  # a .sqlite name: ResultsStore takes any other as a folder
    for leftover in (fresh, *(fresh.with_name(fresh.name + suffix) for suffix in ("-wal", "-shm"))):
        if leftover.exists():
            leftover.unlink()
    with ResultsStore(fresh) as store, store._connection:
        _insert_raw(store._connection, rows, arrays)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, kept)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + suffix))
    os.replace(fresh, path)
    for suffix in ("-wal", "-shm"):
        side = fresh.with_name(fresh.name + suffix)
        if side.exists():
            side.unlink()
    repaired = StoreCheck(path, check.readable, check.error, rows=found, damaged=damaged, arrays=len(arrays),
                          kept_as=kept)
    _tally(repaired, rows)
    return repaired
