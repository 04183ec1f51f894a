"""Fixtures of the background-session tests (``pytest_plugins`` of tests/test_sessions*.py).

Every test gets its own ``CODEX_EXEC_HOME``; teardown deletes every session in it
and then fails the test if any supervisor or child of that home is still alive.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sessions_helpers import cleanup_home

from codex_exec_kernel.sessions.api import SessionManager
from codex_exec_kernel.sessions.config import SessionConfig


@pytest.fixture
def session_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    home = str(tmp_path / "codex-exec-home")
    monkeypatch.setenv("CODEX_EXEC_HOME", home)
    yield home
    leaks = cleanup_home(home)
    assert not leaks, f"left running after the test: {leaks}"


@pytest.fixture
def manager(session_home: str) -> SessionManager:
    return SessionManager(SessionConfig(home=session_home, delete_grace=1.0, exit_linger=0.3))
