"""Fixtures of the plotting tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_sweep import TINY, write_config


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    return write_config(tmp_path, TINY, "tiny.yaml")
