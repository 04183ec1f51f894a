"""Shared fixtures: real servers, and helpers that wait on conditions with deadlines."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from connect_routes import skip_reason, start_route_server
from stdio_client import StdioClient
from waiting import pid_alive, wait_gone, wait_until  # noqa: F401  (re-exported)


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
    for item in items:  # tests that cannot hold through `codex-exec connect` on this route
        reason = skip_reason(item.name)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def stdio_route_server() -> Iterator[None]:
    """The Jupyter server or gateway the stdio suite's route needs (see connect_routes)."""
    stop = start_route_server()
    yield
    stop()
