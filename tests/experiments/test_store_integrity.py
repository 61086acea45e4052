"""Fault injection on the results store: every damage has its documented outcome, and nothing wrong ever reaches
a CSV or a report.

Each case damages a copy of one finished tiny sweep's store the way a disk or a user can (truncation, random
bytes, one flipped bit in a stored float or in stored JSON, a deleted table, a store from a newer volumelab), then
follows what a user would do (run, ``store check``, ``store repair``, run again) and compares the final results
with the undamaged run's, value for value.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volumelab import _results_version
from volumelab.cli import main
from volumelab.errors import StoreError
from volumelab.experiments import load_sweep, plan_sweep, run_sweep
from volumelab.experiments.store import KEY_MISMATCH, ResultsStore, check_store, repair_store, row_checksum, _CHECKED
from volumelab.plotting.report import write_sweep_outputs

from sweep_testing import TINY, write_config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One undamaged run of the tiny sweep: its config, its folder and its values by (method, seed, point)."""
    folder = tmp_path_factory.mktemp("finished")
    config = load_sweep(write_config(folder, TINY))
    out = folder / "out"
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert not (out / "results.sqlite-wal").exists()  # the last connection's close wrote everything to the file
    return config, out, outcome.planned_rows, _values(out)


def _values(out: Path) -> dict:
    with ResultsStore(out, create=False) as store:
        return {(row["method"], row["seed"], row["point"]): (row["status"], row["metrics"], row["gen_loss"])
                for row in store.fetch()}


def _copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished[1], out)
    return out


def _flip_bit(path: Path, needle: bytes, offset_in_needle: int, bit: int) -> None:
    data = bytearray(path.read_bytes())
    where = data.find(needle)
    assert where >= 0 and data.find(needle, where + 1) < 0, "the value to damage occurs once in the file"
    data[where + offset_in_needle] ^= 1 << bit
    path.write_bytes(bytes(data))


def _csv_values(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").sort_values(["method", "seed", "point"]).reset_index(drop=True)


def _rerun_equals_undamaged(finished, out, expected_runs: int) -> None:
    config, _, planned, undamaged = finished
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert outcome.ran_rows == expected_runs
    assert _values(out) == undamaged
    write_sweep_outputs(outcome.plan, out)
    reference = finished[1] / "results.csv"
    if not reference.exists():
        write_sweep_outputs(plan_sweep(config), finished[1])
    columns = ["method", "seed", "point", "status", "gen_loss", "train_loss"]
    assert _csv_values(out)[columns].equals(_csv_values(finished[1])[columns])


def test_a_truncated_store_is_one_line_naming_repair_and_repair_loses_only_its_lost_rows(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    database = out / "results.sqlite"
    os.truncate(database, 5000)
    with pytest.raises(StoreError, match="store repair"):
        run_sweep(finished[0], out_dir=out, progress=False)
    assert main(["run", str(out / "sweep.yaml"), "--out", str(out), "--no-report"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "volumelab store repair" in error and str(database) in error
    assert main(["store", "check", str(out)]) == 1
    assert "unreadable by SQLite" in capsys.readouterr().out
    check = repair_store(out)
    assert check.kept_as is not None and check.kept_as.exists() and check.kept_as.name.startswith(
        "results.sqlite.damaged-")
    assert check_store(out).ok
    _rerun_equals_undamaged(finished, out, finished[2] - check.intact)


def test_random_bytes_in_the_file_never_reach_the_outputs(finished, tmp_path):
    """64 random bytes in the middle of the file (where they land depends on the stored rows' sizes: on
    2026-12-06 a new method setting moved them onto a row's run key, which the store could neither delete by
    key nor replace past the unique index's stale entry; ``test_a_damaged_run_key_is_deleted_and_rerun``)."""
    import random

    out = _copy(finished, tmp_path)
    database = out / "results.sqlite"
    data = bytearray(database.read_bytes())
    generator = random.Random(7)
    start = len(data) // 2
    data[start:start + 64] = bytes(generator.randrange(256) for _ in range(64))
    database.write_bytes(bytes(data))
    check = check_store(out)
    assert not check.ok
    if not check.readable:  # the bytes broke SQLite's structure: repair first, as the error says
        with pytest.raises(StoreError, match="store repair"):
            run_sweep(finished[0], out_dir=out, progress=False)
        check = repair_store(out)
    lost = finished[2] - check.intact if not check.readable else None
    _rerun_equals_undamaged(finished, out, lost if lost is not None else _lost_with_partners(check, finished))


def _lost_with_partners(check, finished) -> int:
    """Rows a sweep reruns for damaged rows: each damaged row with its run's other rows (own and extra)."""
    keys = set(check.damaged)
    # A row whose run key is itself damaged is listed as "<row ID>": its key is the undamaged store's row ID's
    # (the store reads it back from its unique index, and its run's other rows go with it).
    garbled = {int(key[5:-1]) for key in keys if key.startswith("<row ")}
    if garbled:
        with sqlite3.connect(finished[1] / "results.sqlite") as connection:
            keys = (keys - {f"<row {row_id}>" for row_id in garbled}) | {
                connection.execute("SELECT run_key FROM runs WHERE id = ?", (row_id,)).fetchone()[0]
                for row_id in garbled}
    bases = {key.split(":", 1)[0] for key in keys}
    return sum(1 for key in plan_sweep(finished[0]).keys if key.split(":", 1)[0] in bases)


def test_a_damaged_run_key_is_deleted_and_rerun(finished, tmp_path):
    """A byte of a run's key set to 0xFF makes its row unreadable (not UTF-8) under no key: the next sweep reads the
    key back from the unique index, deletes the row by its id with its run's other rows, reruns the run, and every
    value equals the undamaged store's."""
    out = _copy(finished, tmp_path)
    with ResultsStore(out, create=False) as store:
        row = next(row for row in store.fetch() if row["method"] == "gnc" and ":" not in row["run_key"])
    database = out / "results.sqlite"
    original, key = database.read_bytes(), row["run_key"].encode()
    # The key is in the file several times (the row's, its extra row's key starts with it, the unique index's):
    # the copy to damage is the one that leaves the row unreadable under no key.
    places = [at for at in range(len(original)) if original.startswith(key, at)]
    for where in places:
        data = bytearray(original)
        data[where] = 0xFF  # never valid UTF-8
        database.write_bytes(bytes(data))
        check = check_store(out)
        if check.readable and any(name.startswith("<row ") for name in check.damaged):
            break
    else:
        pytest.fail(f"no copy of the key among {len(places)} leaves its row unreadable")
    _rerun_equals_undamaged(finished, out, _lost_with_partners(check, finished))


def test_a_run_key_damaged_into_another_valid_key_is_caught_in_every_copy(finished, tmp_path):
    """The checksum leaves the run key out (a key migration renames it), so one flipped bit that turns the key into
    other valid text must be caught by comparing it with the unique index's copy: in the table's copy the row
    would otherwise pass verification under a key no run has, and its run's rerun would be refused as already
    stored; in the index's copy the store would hold a stale index. Every copy of the key in the file is damaged
    in turn (the runs table's and its index's, and those of the run's extra row, whose key starts with it):
    each one that a read can see is reported, its run is deleted with its other rows and computed again, and
    every value equals the undamaged store's."""
    with ResultsStore(finished[1], create=False) as store:
        row = next(row for row in store.fetch() if row["method"] == "gnc" and ":" not in row["run_key"])
    original, key = (finished[1] / "results.sqlite").read_bytes(), row["run_key"].encode()
    base = row["run_key"].split(":", 1)[0]
    with_partners = sum(1 for planned in plan_sweep(finished[0]).keys if planned.split(":", 1)[0] == base)
    places = [at for at in range(len(original)) if original.startswith(key, at)]
    caught = []
    for number, where in enumerate(places):
        out = tmp_path / f"copy{number}"
        shutil.copytree(finished[1], out)
        data = bytearray(original)
        data[where] ^= 1  # the key's first character, still ASCII: another valid key
        (out / "results.sqlite").write_bytes(bytes(data))
        check = check_store(out)
        assert check.readable
        if check.ok:  # bytes no read uses (a free page's leftover copy): nothing to rerun, nothing changed
            _rerun_equals_undamaged(finished, out, 0)
            continue
        assert set(check.damaged.values()) <= {KEY_MISMATCH, "its arrays are missing"}, check.damaged
        caught.append(number)
        _rerun_equals_undamaged(finished, out, with_partners)
        assert check_store(out).ok
    # At least the runs table's copy and its index's copy are seen (without the comparison neither would be).
    assert len(caught) >= 2, (places, caught)


@pytest.mark.parametrize("where", ["float", "json"])
def test_one_flipped_bit_is_detected_left_out_and_rerun(finished, tmp_path, where):
    out = _copy(finished, tmp_path)
    database = out / "results.sqlite"
    with ResultsStore(out, create=False) as store:
        row = next(row for row in store.fetch() if row["method"] == "gnc" and row["metrics"]["accepted"] >= 10)
    if where == "float":  # SQLite stores a REAL as 8 big-endian bytes: flip the last bit of the mantissa
        _flip_bit(database, struct.pack(">d", row["gen_loss"]), 7, 0)
    else:  # the same run's accepted count in its metrics JSON: one digit's lowest bit
        text = f'"accepted": {row["metrics"]["accepted"]}, '.encode()
        _flip_bit(database, text, len('"accepted": '), 0)
    check = check_store(out)
    assert check.readable and list(check.damaged) == [row["run_key"]]
    # Reporting without running leaves the row out of the CSV: the damaged value never appears.
    plan = plan_sweep(finished[0])
    write_sweep_outputs(plan, out)
    table = pd.read_csv(out / "results.csv")
    assert len(table) == finished[2] - 1
    assert not ((table["method"] == "gnc") & (table["seed"] == row["seed"]) & (table["point"] == row["point"])).any()
    # A run deletes it with its prior row and computes both again, to the same values as before the damage.
    _rerun_equals_undamaged(finished, out, 2)


def test_a_deleted_table_is_named_and_repair_starts_a_store_that_reruns_everything(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path)
    connection = sqlite3.connect(str(out / "results.sqlite"))
    connection.execute("DROP TABLE runs")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="no table of runs.*store repair"):
        ResultsStore(out)
    check = repair_store(out)
    assert check.intact == 0 and check.kept_as is not None
    _rerun_equals_undamaged(finished, out, finished[2])


def test_a_store_from_a_newer_volumelab_is_refused(finished, tmp_path):
    out = _copy(finished, tmp_path)
    newer = _results_version.RESULTS_VERSION + 1
    connection = sqlite3.connect(str(out / "results.sqlite"))
    row_id, *values = connection.execute(f"SELECT id, {', '.join(_CHECKED)} FROM runs LIMIT 1").fetchone()
    values[_CHECKED.index("results_version")] = newer
    connection.execute("UPDATE runs SET results_version = ?, checksum = ? WHERE id = ?",
                       (newer, row_checksum(values), row_id))
    connection.commit()
    connection.close()
    assert check_store(out).ok  # intact: written by a newer volumelab, not damaged
    with pytest.raises(StoreError, match=f"results version {newer}, written by a newer volumelab"):
        run_sweep(finished[0], out_dir=out, progress=False)


#: Long enough (48 G&C runs of 2x10^5 draws, seconds in all) that the kill lands mid-sweep on any machine.
KILLED_SWEEP = TINY.replace("seeds: 3", "seeds: 12").replace("samples: 3000", "samples: 200000")

_RUN = """
import sys
from volumelab.experiments import load_sweep, run_sweep
run_sweep(load_sweep(sys.argv[1]), out_dir=sys.argv[2], progress=False)
"""


def test_a_sweep_killed_by_sigkill_loses_at_most_the_runs_in_flight(tmp_path):
    config_path = write_config(tmp_path, KILLED_SWEEP, "killed.yaml")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", _RUN, str(config_path), str(out)],
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "results.sqlite").exists():
            try:
                connection = sqlite3.connect(f"file:{out / 'results.sqlite'}?mode=ro", uri=True, timeout=1)
                stored = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                connection.close()
            except sqlite3.Error:
                stored = 0
        if stored >= 8:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the sweep finished before it could be killed: make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    check = check_store(out)
    assert check.ok and check.intact >= 8
    config = load_sweep(config_path)
    planned = len(plan_sweep(config).keys)
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert outcome.stored_before == check.intact and outcome.ran_rows == planned - check.intact


KEEPING = TINY.replace("gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}",
                       "gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3, trajectory_every: 5}")


@pytest.fixture(scope="module")
def finished_with_arrays(tmp_path_factory):
    """The tiny sweep with GD's trajectories kept: its runs' arrays are part of their results."""
    folder = tmp_path_factory.mktemp("arrays")
    config = load_sweep(write_config(folder, KEEPING))
    out = folder / "out"
    run_sweep(config, out_dir=out, progress=False)
    with ResultsStore(out, create=False) as store:
        arrays = {key: {name: value.tolist() for name, value in kept.items()} for key, kept in store.arrays().items()}
    assert len(arrays) == 12  # 2 activations x 2 widths x 3 seeds of GD
    return config, out, arrays


def _arrays(out: Path) -> dict:
    with ResultsStore(out, create=False) as store:
        return {key: {name: value.tolist() for name, value in kept.items()} for key, kept in store.arrays().items()}


def _same_arrays(found: dict, expected: dict) -> None:
    """The arrays of every run, a rerun's to 1e-9 relative: GD reruns one seed alone where the first run batched a
    point's three seeds, and a batch agrees with separate runs to 1e-9, not bit for bit
    (tests/optimizers/test_gradient.py::test_batch_equals_separate_runs)."""
    assert found.keys() == expected.keys()
    for key, kept in expected.items():
        assert found[key].keys() == kept.keys()
        for name, values in kept.items():
            np.testing.assert_allclose(found[key][name], values, rtol=1e-9, atol=1e-15, err_msg=f"{key} {name}")


def _damaged_copy(undamaged: Path, tmp_path: Path, damage: str) -> Path:
    """A copy of the store with one run's arrays deleted (``damage``: its run key) or a statement run on it."""
    out = tmp_path / "out"
    shutil.copytree(undamaged, out)
    connection = sqlite3.connect(str(out / "results.sqlite"))
    with connection:
        if damage.startswith("DROP "):
            connection.execute(damage)
        else:
            connection.execute("DELETE FROM arrays WHERE run_key = ?", (damage,))
    connection.close()
    return out


@pytest.mark.parametrize("damage", ["one run's arrays deleted", "the arrays table dropped"])
def test_a_run_whose_arrays_were_lost_is_detected_and_rerun(finished_with_arrays, tmp_path, damage):
    """A row records its arrays' checksum: a run whose arrays are gone is incomplete, never used, and reruns."""
    config, undamaged, arrays = finished_with_arrays
    key = sorted(arrays)[0]
    out = _damaged_copy(undamaged, tmp_path, "DROP TABLE arrays" if damage == "the arrays table dropped" else key)
    check = check_store(out)
    lost = 12 if damage == "the arrays table dropped" else 1
    assert not check.ok and len(check.damaged) == lost
    assert check.damaged[key] == "its arrays are missing"
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert outcome.ran_rows == lost
    _same_arrays(_arrays(out), arrays)


def test_repair_drops_a_run_whose_arrays_it_could_not_reach(finished_with_arrays, tmp_path):
    config, undamaged, arrays = finished_with_arrays
    key = sorted(arrays)[1]
    out = _damaged_copy(undamaged, tmp_path, key)
    repaired = repair_store(out)
    assert repaired.damaged == {key: "its arrays were lost"} and check_store(out).ok
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert outcome.ran_rows == 1
    _same_arrays(_arrays(out), arrays)


def test_a_run_key_damaged_into_another_valid_key_is_caught_in_its_arrays_too(finished_with_arrays, tmp_path):
    """As for a row, a flipped bit that turns a run's key into another valid key in any copy (its row, the runs
    index, its arrays' row, the arrays index) is seen, and the run alone is computed again, its arrays with it."""
    config, undamaged, arrays = finished_with_arrays
    key = sorted(arrays)[0]
    original = (undamaged / "results.sqlite").read_bytes()
    places = [at for at in range(len(original)) if original.startswith(key.encode(), at)]
    caught = 0
    for number, where in enumerate(places):
        out = tmp_path / f"copy{number}"
        shutil.copytree(undamaged, out)
        data = bytearray(original)
        data[where] ^= 1
        (out / "results.sqlite").write_bytes(bytes(data))
        check = check_store(out)
        assert check.readable
        if not check.ok:
            caught += 1
            assert set(check.damaged.values()) <= {KEY_MISMATCH, "its arrays are missing"}, check.damaged
        outcome = run_sweep(config, out_dir=out, progress=False)
        assert outcome.ran_rows == (0 if check.ok else 1)
        assert check_store(out).ok
        _same_arrays(_arrays(out), arrays)
    assert caught >= 4, (places, caught)


def _key_places(finished, method: str = "gnc", which: int = 0) -> tuple[str, bytes, list[int]]:
    with ResultsStore(finished[1], create=False) as store:
        keys = [row["run_key"] for row in store.fetch() if row["method"] == method and ":" not in row["run_key"]]
    original = (finished[1] / "results.sqlite").read_bytes()
    key = keys[which]
    return key, original, [at for at in range(len(original)) if original.startswith(key.encode(), at)]


def test_repair_leaves_out_a_row_under_a_damaged_key(finished, tmp_path):
    """``store repair`` salvages rows by their checksums, which leave the key out: a row whose key was damaged into
    another valid key must not be salvaged under it (it would stand beside its run's rerun, under a key no run
    has). The damaged copy is the table's (the one reported under a key the sweep does not plan)."""
    key, original, places = _key_places(finished)
    planned = set(plan_sweep(finished[0]).keys)
    for number, where in enumerate(places):
        out = tmp_path / f"copy{number}"
        shutil.copytree(finished[1], out)
        data = bytearray(original)
        data[where] ^= 1
        (out / "results.sqlite").write_bytes(bytes(data))
        strays = [name for name in check_store(out).damaged if name not in planned]
        if strays:
            break
    else:
        pytest.fail(f"no copy of {key} among {len(places)} is the table's")
    repaired = repair_store(out)
    assert repaired.damaged == {strays[0]: KEY_MISMATCH} and check_store(out).ok
    with ResultsStore(out, create=False) as store:
        assert not any(row["run_key"] not in planned for row in store.fetch())
    _rerun_equals_undamaged(finished, out, finished[2] - repaired.intact)


def test_a_damaged_key_equal_to_another_runs_names_repair_and_repair_keeps_the_true_row(finished, tmp_path, capsys):
    """A run key damaged into another run's key (the table then holds that key twice) cannot be deleted by key
    and the indexes cannot be rebuilt: the run stops with one line naming ``store repair``, and repair keeps the
    other run's own row and leaves out the damaged one."""
    key, original, places = _key_places(finished, which=0)
    other = _key_places(finished, which=1)[0]
    for number, where in enumerate(places):
        out = tmp_path / f"copy{number}"
        shutil.copytree(finished[1], out)
        data = bytearray(original)
        data[where:where + len(key)] = other.encode()
        (out / "results.sqlite").write_bytes(bytes(data))
        if other in check_store(out).damaged:  # the table's copy: the row now claims the other run's key
            break
    else:
        pytest.fail(f"no copy of {key} among {len(places)} is the table's")
    with pytest.raises(StoreError, match="equals another run's.*store repair"):
        run_sweep(finished[0], out_dir=out, progress=False)
    repaired = repair_store(out)
    assert repaired.damaged == {other: KEY_MISMATCH} and check_store(out).ok
    _rerun_equals_undamaged(finished, out, finished[2] - repaired.intact)


def test_a_key_renamed_by_another_process_between_the_index_and_the_table_reads_is_no_damage(finished, tmp_path,
                                                                                              monkeypatch):
    """The index and the table are read in one read transaction: another connection that renames a run's key
    (a key migration) after the index is read and before the table is leaves the reader's view consistent, so
    nothing reads as damaged; the rename shows on the next read."""
    out = _copy(finished, tmp_path)
    key = _key_places(finished)[0]
    renamed = "f" * len(key)
    reader = ResultsStore(out, create=False)
    original = ResultsStore._index_keys

    def index_then_rename(self, table):
        found = original(self, table)
        if self is reader and table == "runs" and not getattr(reader, "_renamed", False):
            reader._renamed = True
            with ResultsStore(out, create=False) as writer:
                assert writer.migrate_keys({key: renamed}) == 1
        return found

    monkeypatch.setattr(ResultsStore, "_index_keys", index_then_rename)
    try:
        assert reader.damaged_rows() == {}
        assert renamed in reader.existing_keys() and key not in reader.existing_keys()
    finally:
        reader.close()
