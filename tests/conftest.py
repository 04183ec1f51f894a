"""Shared fixtures: real servers, and helpers that wait on conditions with deadlines."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from stdio_client import StdioClient
from waiting import pid_alive, wait_gone, wait_until  # noqa: F401  (re-exported)

# Every server and kernel the tests start checks that loop-owned objects stay on their
# loop's thread (codex_exec_kernel/threads.py).
os.environ.setdefault("CODEX_EXEC_CHECK_THREADS", "1")


@pytest.fixture
def server() -> Iterator[StdioClient]:
    client = StdioClient()
    yield client
    client.close()


@pytest.fixture
def make_server() -> Iterator[Callable[..., StdioClient]]:
    made: list[StdioClient] = []

    def make(*options: str, **kwargs: object) -> StdioClient:
        client = StdioClient(*options, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main
    thread until the session ends, which would break later tests that call asyncio.run."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
