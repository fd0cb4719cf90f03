"""The fleet suites' PostgreSQL: one Debian server per module, started on a free port in a
temporary directory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_helpers import Postgres, postgres_server  # noqa: E402


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server
