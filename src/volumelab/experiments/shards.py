"""Shard stores: sweeps on a cluster without a database shared between hosts.

On a cluster, a sweep's output folder usually lives on a network filesystem (NFS, Lustre, GPFS), where SQLite's
locks and its write-ahead log are documented not to work: several hosts writing one database would corrupt it.
So a job of ``volumelab run --executor slurm`` (or ``submitit-local``) never writes the sweep's store. It writes
its own *shard*, ``<out>/shards/<submission>-<job>.sqlite``: one file per job, written by that job alone, in
SQLite's rollback-journal mode, one transaction per finished task (a job killed mid-task loses only that task).
The driver merges each shard into the sweep's store when its job ends (:meth:`ResultsStore.merge`: every row is
verified against its checksum, rows the store holds are kept), and merges every shard in the folder again before
each run, so the runs of jobs that finished after their driver stopped are never lost or recomputed.
``volumelab store merge DIR`` does the same by hand. Merging is idempotent; shards are kept until the folder is
cleared with ``--force``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .store import Merged, ResultsStore

logger = logging.getLogger(__name__)

__all__ = ["SHARDS_FOLDER", "merge_shards", "run_shard", "shard_paths"]

#: The folder of a sweep's output folder that holds its jobs' shard stores.
SHARDS_FOLDER = "shards"


def run_shard(function: Callable[[Any], Any], tasks: Sequence[Any], path: str, threads: int | None) -> str:
    """Run ``tasks`` one after the other (in a cluster job), storing each one's rows in the shard ``path`` the
    moment it finishes; returns ``path``.

    Args:
        function: Runs one task and returns its rows (:func:`~volumelab.experiments.driver.execute_task`).
        tasks: This job's tasks.
        path: The shard's file, ``<out>/shards/<name>.sqlite``; this job alone writes it.
        threads: Torch threads; ``None``: the cores this job may use (its CPU affinity, which SLURM sets).
    """
    import torch

    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    with ResultsStore(path, journal="delete") as store:
        for task in tasks:
            store.add(function(task))
    return path


def shard_paths(out_dir: str | Path) -> list[Path]:
    """The shard stores in ``out_dir``'s shard folder, by name (empty when there is none)."""
    folder = Path(out_dir) / SHARDS_FOLDER
    return sorted(folder.glob("*.sqlite")) if folder.is_dir() else []


def merge_shards(store: ResultsStore, out_dir: str | Path) -> list[Merged]:
    """Merge every shard store in ``out_dir`` into ``store`` (see the module docstring); one :class:`Merged` each."""
    merged = []
    for path in shard_paths(out_dir):
        outcome = store.merge(path)
        if outcome.damaged:
            logger.warning("%s: %d rows fail verification and were not merged (%s); their runs run again",
                           path, len(outcome.damaged), next(iter(outcome.damaged.values())))
        merged.append(outcome)
    added = sum(m.added for m in merged)
    if added:
        logger.info("%s: %d runs merged from %d shard stores", store.path, added, len(merged))
    return merged
