"""Shared fixtures: real servers, a private home for the whole run, and helpers that wait
on conditions with deadlines."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from connect_routes import skip_reason, start_route_server
from stdio_client import StdioClient
from waiting import pid_alive, scaled, wait_gone, wait_until  # noqa: F401  (re-exported)

#: Variables that point a program at the machine's own configuration; the suite removes
#: them so that nothing of the user who runs it (a ``JUPYTER_PATH``, a ``BASH_ENV`` that
#: runs ``pyenv init``, a ``PYTHONSTARTUP``) changes what the tests see.
MACHINE_VARIABLES = (
    "BASH_ENV", "ENV", "PROMPT_COMMAND", "PYTHONSTARTUP", "JUPYTER_PATH",
    "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH", "JUPYTER_PLATFORM_DIRS",
    "IPYTHON_DIR", "CODEX_EXEC_HOME", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR",
)  # fmt: skip


def private_home_environ(base: Path) -> dict[str, str]:
    """The variables that give every process of the run an empty home under ``base``.

    ``HOME`` has no rc files, so ``bash -l`` in a Kernel Terminal, ``%exec`` and every
    session start the same on any machine; IPython, Jupyter and the XDG programs keep
    their state there too (never in the user's ``~/.ipython`` or ``~/.local``).
    """
    home = base / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(base / "xdg-runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".local" / "share" / "jupyter" / "runtime"),
    }
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    Path(env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    return env


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test, and every process it starts, runs with a temporary, empty ``HOME``.

    Set in ``os.environ`` (not per test) so kernels, servers, shells and sessions all
    inherit it. Tests that need a realistic home write their own rc files into one.
    """
    saved = dict(os.environ)
    # pip's cache is content-addressed and changes no behaviour, only speed: the Binder
    # test's fresh venv keeps using the machine's one instead of downloading again.
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    for key in MACHINE_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(private_home_environ(tmp_path_factory.mktemp("private-home")))
    if Path(pip_cache).is_dir():
        os.environ["PIP_CACHE_DIR"] = pip_cache
    yield Path(os.environ["HOME"])
    os.environ.clear()
    os.environ.update(saved)

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
    thread until the session ends, which would break later tests that call asyncio.run.

    Each test's pytest-timeout (its ``timeout`` marker, else the ini value) is scaled
    like every other deadline (``CODEX_EXEC_TEST_TIMEOUT_SCALE``)."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else default
        if seconds:
            item.add_marker(pytest.mark.timeout(scaled(seconds)), append=False)
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
