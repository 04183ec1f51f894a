"""Bytes are exact and never dropped: big transfers, a stalled reader, flow control."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time

import psutil
import pytest
from stdio_client import StdioClient, b64
from waiting import scaled, wait_until

MB = 1_000_000


def test_10_mib_random_file_exact_through_cat(server: StdioClient, tmp_path) -> None:
    data = os.urandom(10 * 1024 * 1024)
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    r = server.run(["cat", str(path)], timeout=60)
    assert hashlib.sha256(r["stdout"]).hexdigest() == hashlib.sha256(data).hexdigest()


def test_10_mib_through_stdin_writes_and_back(server: StdioClient) -> None:
    data = os.urandom(10 * 1024 * 1024)
    started = server.request("process/start", {"argv": ["cat"], "pipeStdin": True})
    pid = started["processId"]
    step = 256 * 1024
    for i in range(0, len(data), step):
        server.request("process/write", {"processId": pid, "chunk": b64(data[i:i + step])})
    server.request("process/closeStdin", {"processId": pid})
    events = server.wait_closed(pid, timeout=60)
    got = b"".join(base64.b64decode(m["params"]["chunk"]) for m in events
                   if m["method"] == "process/output")
    assert got == data


FLOOD = 200 * 1024 * 1024  # 200 blocks of 1 MiB
# A child that writes a known, checkable stream: 200 MB of a repeating 1 MB pattern.
FLOOD_CMD = [
    "python3", "-c",
    "import sys\n"
    "block = bytes(range(256)) * 4096\n"
    "out = sys.stdout.buffer\n"
    f"for _ in range({FLOOD} // len(block)): out.write(block)\n"
    "out.flush()\n",
]  # fmt: skip


def _expected_digest() -> str:
    block = bytes(range(256)) * 4096
    h = hashlib.sha256()
    for _ in range(FLOOD // len(block)):
        h.update(block)
    return h.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("flow_control", [True, False], ids=["acks", "pipe-backpressure"])
def test_200mb_flood_with_stalled_reader_loses_nothing(flow_control: bool) -> None:
    """The reader stops for 5 s mid-flood: nothing is lost and the server stays small.

    With ``flowControl`` the client acks what it consumed and the window bounds the
    server; without it, the stdout pipe's backpressure does (the connection is
    congested and the process is not read).
    """
    client = StdioClient(flow_control=flow_control)
    digest = hashlib.sha256()
    received = [0]
    done = threading.Event()
    expected_seq = [1]
    problems: list[str] = []
    stalled = threading.Event()
    stall_at = 50 * MB

    def on_note(msg: dict) -> None:
        params = msg["params"]
        if params.get("processId") != "flood":
            return
        if params["seq"] != expected_seq[0]:
            problems.append(f"seq {params['seq']} != {expected_seq[0]}")
        expected_seq[0] = params["seq"] + 1
        if msg["method"] == "process/output":
            chunk = base64.b64decode(params["chunk"])
            digest.update(chunk)
            received[0] += len(chunk)
            if flow_control:
                client.notify("process/ack", {"processId": "flood", "seq": params["seq"]})
            if received[0] >= stall_at and not stalled.is_set():
                stalled.set()
                client.pause_reading()  # stop reading stdout entirely
        elif msg["method"] == "process/closed":
            done.set()

    client.on_notification = on_note
    try:
        server_ps = psutil.Process(client.proc.pid)
        client.request("process/start", {"argv": FLOOD_CMD, "processId": "flood"})
        assert stalled.wait(scaled(60)), "the flood never reached the stall point"
        peak = 0
        t_end = time.monotonic() + 5
        while time.monotonic() < t_end:  # sample the server while nobody reads
            peak = max(peak, server_ps.memory_info().rss)
            time.sleep(0.05)
        client.resume_reading()
        assert done.wait(scaled(120)), "the flood did not finish"
        assert not problems, problems[:5]
        assert received[0] == FLOOD
        assert digest.hexdigest() == _expected_digest()
        assert peak < 200 * MB, f"server RSS peaked at {peak / MB:.0f} MB while stalled"
    finally:
        client.close()


def test_flow_control_pauses_the_child_until_acked(make_server) -> None:
    """Without acks, a flow-controlled client gets about one window, then the child blocks."""
    window = 256 * 1024
    client = make_server(f"--ProcessTable.flow_control_window={window}", flow_control=True)
    client.request("process/start", {"argv": ["head", "-c", "5000000", "/dev/zero"],
                                     "processId": "z"})

    def got() -> int:
        return sum(len(base64.b64decode(m["params"]["chunk"])) for m in client.events("z")
                   if m["method"] == "process/output")

    wait_until(lambda: got() > window, 10)
    time.sleep(0.5)  # a quiet period: nothing more may arrive while unacked
    before = got()
    assert before <= window + 2 * 256 * 1024  # window + one chunk (256 KiB) + one read
    listing = client.request("process/list")["processes"][0]
    assert not listing["exited"]  # the child is blocked writing, not finished
    last = max(m["params"]["seq"] for m in client.events("z"))
    while True:
        client.notify("process/ack", {"processId": "z", "seq": last})
        try:
            client.wait_for(lambda m, last=last: m["params"].get("processId") == "z"
                            and m["params"]["seq"] > last, 10)
        except TimeoutError:
            break
        last = max(m["params"]["seq"] for m in client.events("z"))
        if any(m["method"] == "process/closed" for m in client.events("z")):
            break
    assert got() == 5_000_000
