"""Reading rows straight from a SQLite file's pages (experiments/_pages.py), checked against SQLite itself."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3

from volumelab.experiments import load_sweep, run_sweep
from volumelab.experiments._pages import leaf_records
from volumelab.experiments.store import ResultsStore, check_store, repair_store

from sweep_testing import TINY, write_config


def test_every_record_reads_as_sqlite_reads_it(tmp_path):
    """Integers of every width, floats, NULL, text and blobs, short and spilling over several overflow pages."""
    path = tmp_path / "t.sqlite"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)")
    generator = random.Random(3)
    values = [0, 1, -1, 127, -128, 300, -40000, 8_000_000, 2**31 - 1, -(2**40), 2**62, 0.1, -2.5e-300, None]
    rows = []
    for index in range(400):
        size = generator.choice([0, 5, 300, 4000, 5000, 20000])
        rows.append((generator.choice(values), "é" * size if index % 2 else "x" * size,
                     bytes(generator.randrange(256) for _ in range(generator.choice([0, 10, 6000])))))
    connection.executemany("INSERT INTO t (a, b, c) VALUES (?, ?, ?)", rows)
    connection.commit()
    expected = sorted(connection.execute("SELECT a, b, c FROM t"), key=repr)
    connection.close()
    records = [tuple(record[1:]) for record in leaf_records(path) if len(record) == 4]
    assert sorted(records, key=repr) == expected


def test_free_pages_do_not_bring_back_deleted_rows(tmp_path):
    path = tmp_path / "t.sqlite"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a)")
    connection.executemany("INSERT INTO t (a) VALUES (?)", [(f"row {i} " + "y" * 3000,) for i in range(200)])
    connection.commit()
    connection.execute("DELETE FROM t WHERE id > 20")
    connection.commit()
    connection.close()
    kept = {record[1] for record in leaf_records(path) if len(record) == 2}
    assert kept == {f"row {i} " + "y" * 3000 for i in range(20)}


def test_a_half_truncated_store_keeps_every_row_on_its_surviving_pages(tmp_path):
    config = load_sweep(write_config(tmp_path, TINY.replace("seeds: 3", "seeds: 12")))
    out = tmp_path / "out"
    run_sweep(config, out_dir=out, progress=False)
    with ResultsStore(out, create=False) as store:
        original = {row["run_key"]: row for row in store.fetch()}
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    database = damaged / "results.sqlite"
    os.truncate(database, database.stat().st_size // 2)
    check = check_store(damaged)
    assert not check.readable and len(original) // 4 <= check.intact < len(original)
    repair_store(damaged)
    with ResultsStore(damaged, create=False) as store:
        salvaged = {row["run_key"]: row for row in store.fetch()}
    assert salvaged and all(original[key] == {**row, "id": original[key]["id"]} for key, row in salvaged.items())
    outcome = run_sweep(config, out_dir=damaged, progress=False)
    assert outcome.ran_rows == len(original) - len(salvaged)
    numbers = ("method", "point", "seed", "status", "metrics", "standard_errors", "gen_loss", "train_loss", "config")
    with ResultsStore(damaged, create=False) as store:
        again = {row["run_key"]: {name: row[name] for name in numbers} for row in store.fetch()}
    assert again == {key: {name: row[name] for name in numbers} for key, row in original.items()}
