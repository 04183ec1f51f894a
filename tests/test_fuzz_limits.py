"""Valid but huge or adversarial messages, on both transports (a property-based fuzz).

Besides the malformed messages of test_stdio_fuzz.py, hypothesis sends messages the
server must bound: tens of thousands of globs, huge maxBytes and waitMs, deep
nesting, lone surrogates, non-finite ids, bursts of pipelined requests while the
reader is stalled. After each batch: every request was answered (or refused with an
error), the server's RSS is under RSS_BOUND, and a process/list comes back promptly.
The loop-latency check uses the 90th percentile over all batches (a shared CI
machine has hiccups of its own) and a hard ceiling for any single answer.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_helpers import RawComm, blocking_client, start_kernel
from stdio_client import StdioClient

MiB = 1024 * 1024
RSS_BOUND = 256 * MiB
LIST_P90 = 0.1  # seconds
LIST_MAX = 2.0

ids = st.integers(1, 10**9).map(lambda i: f"f{i}")
surrogates = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                     min_size=1, max_size=3)
globs = st.integers(0, 50_000).map(lambda n: [f"G{i}*" for i in range(n)])
adversarial_params = st.one_of(
    st.builds(lambda g: ("process/start", {"argv": ["/nonexistent/fuzz"],
                                           "envPolicy": {"exclude": g}}), globs),
    st.builds(lambda n: ("process/read", {"processId": "noisy", "maxBytes": n}),
              st.integers(1, 2**62)),
    st.builds(lambda n: ("process/read", {"processId": "quiet", "afterSeq": 10**9,
                                          "waitMs": n}), st.integers(0, 50)),
    st.builds(lambda n: ("process/subscribe", {"processId": "noisy", "afterSeq": n}),
              st.integers(0, 50)),
    st.builds(lambda n: ("process/start", {"argv": ["/nonexistent/fuzz"] + ["a"] * n}),
              st.integers(0, 100_000)),
    st.just(("process/start", {"argv": ["true"], "processId": "session:fuzz"})),
    st.builds(lambda n: ("process/write", {"processId": "quiet", "chunk": "QUFB" * n}),
              st.integers(0, 200_000)),
)
# jupyter_client cannot even serialize a lone surrogate: only the stdio fuzz sends them
stdio_params = adversarial_params | st.builds(lambda s: ("process/start", {"argv": [s]}),
                                              surrogates)
raw_lines = st.one_of(
    st.integers(1, 200_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(1, 200_000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d),
    st.sampled_from([b'{"jsonrpc":"2.0","id":NaN,"method":"process/list"}',
                     b'{"jsonrpc":"2.0","id":-Infinity,"method":"process/list"}',
                     b'{"jsonrpc":"2.0","id":"\\ud800","method":"process/list"}']),
)


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


@pytest.fixture(scope="module")
def stdio() -> Any:
    client = StdioClient()
    client.request("process/start", {"argv": ["head", "-c", str(MiB), "/dev/zero"],
                                     "processId": "noisy"})  # fmt: skip
    client.request("process/start", {"argv": ["sleep", "300"], "pipeStdin": True,
                                     "processId": "quiet"})  # fmt: skip
    client.on_notification = lambda msg: None  # replays are not kept
    client.latencies = []  # type: ignore[attr-defined]
    yield client
    assert statistics.quantiles(client.latencies, n=10)[-1] < LIST_P90, client.latencies
    client.close()


def answered_list(client: StdioClient) -> float:
    t0 = time.monotonic()
    client.request("process/list", timeout=30)
    return time.monotonic() - t0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.tuples(ids, stdio_params) | raw_lines, min_size=1, max_size=4),
       stall=st.integers(0, 400))
def test_stdio_stays_bounded_and_live(stdio: StdioClient, batch: list[Any], stall: int) -> None:
    sent: list[str] = []
    for item in batch:
        if isinstance(item, bytes):
            stdio.send_raw(item)
        else:
            msg_id, (method, params) = item
            msg_id = f"{msg_id}-{len(sent)}"
            stdio.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
            sent.append(msg_id)
    if stall:  # pipelined requests while nobody reads the answers
        stdio.pause_reading()
        lines = b"".join(json.dumps({"jsonrpc": "2.0", "id": f"stall{i}",
                                     "method": "process/read",
                                     "params": {"processId": "noisy",
                                                "maxBytes": 65536}}).encode() + b"\n"
                         for i in range(stall))  # fmt: skip
        writer = threading.Thread(target=stdio.send_raw, args=(lines,), daemon=True)
        writer.start()
        writer.join(0.2)
        assert rss(stdio.proc.pid) < RSS_BOUND
        stdio.resume_reading()
        writer.join(30)
        sent += [f"stall{i}" for i in range(stall)]
    for msg_id in sent:  # answered (a result or an error), never dropped
        stdio.wait_response(msg_id, timeout=60)
        stdio.responses.pop(msg_id, None)
    # the loop is live: with the backlog read, a list comes back at once
    latency = answered_list(stdio)
    stdio.latencies.append(latency)  # type: ignore[attr-defined]
    assert latency < LIST_MAX
    crashes = [r for r in [*stdio.unmatched, *stdio.responses.values()]
               if "internal error" in r.get("error", {}).get("message", "")]
    assert not crashes, crashes[:2]  # every bad input is refused, never a crash
    stdio.unmatched.clear()
    assert rss(stdio.proc.pid) < RSS_BOUND


@pytest.fixture(scope="module")
def comm() -> Any:
    km = start_kernel()
    kc = blocking_client(km)
    raw = RawComm(kc)
    raw.request("process/start", {"argv": ["sleep", "300"], "pipeStdin": True,
                                  "processId": "quiet"})  # fmt: skip
    raw.kernel = psutil.Process(km.provisioner.process.pid)  # type: ignore[attr-defined,union-attr]
    yield raw
    kc.stop_channels()
    km.shutdown_kernel(now=True)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(st.tuples(ids, adversarial_params), min_size=1, max_size=3))
def test_comm_stays_bounded_and_live(comm: RawComm, batch: list[Any]) -> None:
    sent = []
    for msg_id, (method, params) in batch:
        msg_id = f"{msg_id}-{len(sent)}"
        comm.send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        sent.append(msg_id)
    t0 = time.monotonic()
    comm.request("process/list", timeout=30)
    assert time.monotonic() - t0 < LIST_MAX
    for msg_id in sent:
        reply, _ = comm.wait_response(msg_id, timeout=30)
        assert "internal error" not in reply.get("error", {}).get("message", ""), reply
    comm.notes.clear()
    comm.note_buffers.clear()
    assert comm.kernel.memory_info().rss < RSS_BOUND + 128 * MiB  # a kernel starts larger
