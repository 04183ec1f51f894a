"""No orphans: whatever ends the server ends every process group it started within 2 s."""

from __future__ import annotations

import signal

import pytest
from stdio_client import StdioClient
from waiting import pid_alive, scaled, wait_gone


def _start_family(client: StdioClient, tty: bool) -> list[int]:
    """A child with two grandchildren, one of which ignores SIGHUP and SIGTERM."""
    started = client.request("process/start", {
        "argv": ["sh", "-c", "sleep 1000 & echo $!; (trap '' HUP TERM; sleep 1000) & echo $!;"
                             " wait"],
        "tty": tty, "processId": f"family-{tty}"})  # fmt: skip
    pid = started["processId"]
    text = client.wait_output(pid, lambda data: data.count(b"\n") >= 2)
    pids = [int(x) for x in text.split()]
    return [started["pid"], *pids]


def _server_with_families() -> tuple[StdioClient, list[int]]:
    client = StdioClient()
    pids = _start_family(client, tty=False) + _start_family(client, tty=True)
    assert all(pid_alive(p) for p in pids)
    return client, pids


def test_stdin_eof_ends_everything() -> None:
    client, pids = _server_with_families()
    assert client.close(timeout=10) == 0
    wait_gone(pids, 2.0 + 1.0)  # grace 2 s for the stubborn grandchild, then SIGKILL


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_server_ends_everything(signum: int) -> None:
    client, pids = _server_with_families()
    client.proc.send_signal(signum)
    client.proc.wait(scaled(10))
    wait_gone(pids, 3.0)
    client.close()


def test_sigkill_of_server_ends_everything_within_2s() -> None:
    client, pids = _server_with_families()
    client.proc.kill()
    client.proc.wait(scaled(10))
    wait_gone(pids, 2.0)
    client.close()


def test_connection_close_does_not_end_processes_before_server_exit() -> None:
    # Processes belong to the server, not to a connection: while the server runs, a
    # process goes on even if nobody is subscribed.
    client = StdioClient()
    started = client.request("process/start", {"argv": ["sleep", "30"]})
    client.request("process/unsubscribe", {"processId": started["processId"]})
    assert pid_alive(started["pid"])
    client.close()
    wait_gone([started["pid"]], 3.0)
