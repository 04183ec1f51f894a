"""Hypothesis throws malformed messages at one server; afterwards a normal exec still works."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdio_client import StdioClient

METHODS = [
    "initialize", "initialized", "process/start", "process/read", "process/write",
    "process/closeStdin", "process/resize", "process/signal", "process/terminate",
    "process/list", "process/subscribe", "process/unsubscribe", "process/ack", "bogus",
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from([
    "processId", "argv", "cwd", "env", "envPolicy", "tty", "pipeStdin", "arg0", "size",
    "afterSeq", "maxBytes", "waitMs", "chunk", "writeId", "rows", "cols", "signal",
    "graceMs", "seq", "clientName", "flowControl", "title",
])  # fmt: skip
params = st.dictionaries(field_names, json_values, max_size=6) | json_values


def _safe(method: str, p: object) -> object:
    """Never let the fuzzer run a real program: any argv is pointed at a missing one."""
    if method == "process/start" and isinstance(p, dict) and isinstance(p.get("argv"), list):
        p = dict(p)
        p["argv"] = ["/nonexistent/fuzz", *p["argv"][1:]]
    if isinstance(p, dict) and p.get("waitMs") is not None:
        p = dict(p, waitMs=0)
    return p


messages = st.one_of(
    st.builds(lambda m, i, p: {"id": i, "method": m, "params": _safe(m, p)},
              st.sampled_from(METHODS),
              st.integers(-(10**6), -1) | st.text(max_size=5).map("fz".__add__), params),
    st.builds(lambda m, p: {"method": m, "params": _safe(m, p)}, st.sampled_from(METHODS), params),
    json_values.map(lambda v: v if not isinstance(v, dict) or "method" not in v else {}),
)
raw_lines = st.binary(max_size=200).filter(lambda b: b"\n" not in b)


@pytest.fixture(scope="module")
def fuzz_server():
    client = StdioClient()
    client.request("process/start", {"argv": ["sleep", "300"], "processId": "bystander"})
    yield client
    client.close()


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(messages | raw_lines, min_size=1, max_size=5))
def test_malformed_messages_change_nothing(fuzz_server: StdioClient, batch) -> None:
    for item in batch:
        if isinstance(item, bytes):
            fuzz_server.send_raw(item)
        else:
            fuzz_server.send_raw(json.dumps(item).encode())
    # the server still answers, in order, and the bystander is untouched
    listing = fuzz_server.request("process/list", timeout=10)
    ids = {p["processId"]: p for p in listing["processes"]}
    assert "bystander" in ids and not ids["bystander"]["exited"]
    crashes = [r for r in fuzz_server.responses.values()
               if "internal error" in r.get("error", {}).get("message", "")]
    assert not crashes, crashes[:3]  # every bad input is a validation error, never a crash


def test_normal_exec_after_fuzz(fuzz_server: StdioClient) -> None:
    r = fuzz_server.run(["sh", "-c", "echo still fine"])
    assert r["stdout"] == b"still fine\n" and r["exit"] == 0
    fuzz_server.request("process/terminate", {"processId": "bystander", "graceMs": 100})
