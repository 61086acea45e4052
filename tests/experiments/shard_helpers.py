"""A task function for the shard tests, importable by the jobs' processes (the tests put this folder on their
PYTHONPATH): it runs a task as the driver would, except that it fails on the tasks of one point."""

from __future__ import annotations

from volumelab.experiments.driver import execute_task

#: The point whose tasks fail.
BROKEN_POINT = 1


def fail_on_one_point(task):
    if task.point == BROKEN_POINT:
        raise ValueError(f"point {task.point} is broken on purpose")
    return execute_task(task)
