"""Helpers of the experiment tests: the tiny sweep and a stand-in executor task."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tiny_sweep import TINY, write_config  # noqa: F401  (re-exported for the experiment tests)


def record_task(task) -> tuple[str, int, int]:
    """A stand-in task for executor tests: ``(name, pid, torch threads)``.

    With a ``folder``, a single-threaded task marks its start there and waits (up to
    30 s) until a second one has started, so it only returns if two run at once. A task
    that runs in-process on an accelerator (``device`` not ``"cpu"``) waits likewise for
    two single-threaded tasks to have started, so it only returns if helpers overlap it.
    """
    import torch

    if not task.single_threaded and getattr(task, "device", "cpu") != "cpu" and task.folder:
        deadline = time.time() + 30
        while len(list(Path(task.folder).glob("started-*"))) < 2:
            if time.time() > deadline:
                raise TimeoutError("the helpers did not run alongside an accelerator task")
            time.sleep(0.01)
    if task.single_threaded and task.folder:
        folder = Path(task.folder)
        (folder / f"started-{task.name}").touch()
        deadline = time.time() + 30
        while len(list(folder.glob("started-*"))) < 2:
            if time.time() > deadline:
                raise TimeoutError("no other single-threaded task started alongside")
            time.sleep(0.01)
    return task.name, os.getpid(), torch.get_num_threads()
