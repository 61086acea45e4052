"""The Ray executor gives the same rows as the in-process one."""

from __future__ import annotations

import sqlite3

import pytest

from volumelab.experiments import load_sweep, run_sweep

ray = pytest.importorskip("ray")


def _losses(out):
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        return dict(connection.execute("SELECT run_key, gen_loss FROM runs"))
    finally:
        connection.close()


def test_ray_matches_local(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    local = run_sweep(config, scale="quick", out_dir=tmp_path / "local")
    remote = run_sweep(config, scale="quick", out_dir=tmp_path / "ray", executor="ray", workers=2)
    assert remote.ran_rows == local.ran_rows == 36
    assert _losses(tmp_path / "local") == _losses(tmp_path / "ray")
    assert not ray.is_initialized()  # the executor shuts down the Ray it started
