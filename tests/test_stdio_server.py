"""Every method and rule of the protocol's process sections, through the real stdio server."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time

import pytest
from commands import CODEX_EXEC
from stdio_client import StdioClient, b64, summarize
from waiting import pid_alive, wait_gone, wait_until

INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL, LIMIT = (
    -32600, -32601, -32602, -32603, -32010,
)  # fmt: skip


def error_code(client: StdioClient, method: str, params: object = None) -> int:
    reply = client.call(method, params)
    assert "error" in reply, reply
    return reply["error"]["code"]


# ---------------------------------------------------------------- handshake


def test_initialize_result_shape(server: StdioClient) -> None:
    result = server.init_result
    assert result is not None
    assert result["protocolVersion"] == "codex-exec.v1"
    assert result["sessionId"] and result["server"]["name"] and result["server"]["version"]
    env = result["environment"]
    assert {"shell", "cwd", "home", "hostname", "platform"} <= set(env)


def test_second_initialize_is_invalid_request(server: StdioClient) -> None:
    assert error_code(server, "initialize", {"clientName": "again"}) == INVALID_REQUEST


def test_calls_before_handshake_say_which_step_is_missing() -> None:
    client = StdioClient(initialize=False)
    try:
        reply = client.call("process/list")
        assert reply["error"]["code"] == INVALID_REQUEST
        assert "initialize" in reply["error"]["message"]
        client.request("initialize", {"clientName": "t"})
        reply = client.call("process/list")
        assert reply["error"]["code"] == INVALID_REQUEST
        assert "initialized" in reply["error"]["message"]
        client.notify("initialized", {})
        assert client.request("process/list") == {"processes": []}
    finally:
        client.close()


def test_initialize_params_validated() -> None:
    client = StdioClient(initialize=False)
    try:
        assert error_code(client, "initialize", {"clientName": 3}) == INVALID_PARAMS
        assert error_code(client, "initialize", {"clientName": "x", "flowControl": 1}) == (
            INVALID_PARAMS
        )
        client.request("initialize", {"clientName": "ok"})  # still possible after bad ones
    finally:
        client.close()


# ---------------------------------------------------------------- malformed messages


@pytest.mark.parametrize("line", [b"not json", b"[1,2]", b"42", b'"str"', b"{", b"\xff\xfe"])
def test_malformed_lines_get_parse_error_with_null_id(server: StdioClient, line: bytes) -> None:
    server.send_raw(line)
    reply = server.wait_unmatched()
    assert reply["id"] is None and reply["error"]["code"] == -32700
    assert server.request("process/list") == {"processes": []}


def test_unknown_method(server: StdioClient) -> None:
    assert error_code(server, "process/explode", {}) == METHOD_NOT_FOUND


def test_params_validated_before_lookup(server: StdioClient) -> None:
    # A malformed call on an unknown id is -32602, not -32600.
    assert error_code(server, "process/read", {"processId": "nope", "afterSeq": "x"}) == (
        INVALID_PARAMS
    )
    assert error_code(server, "process/read", {"processId": "nope"}) == INVALID_REQUEST


def test_too_long_line_is_refused_and_server_goes_on(make_server) -> None:
    client = make_server("--StdioServer.max_message_bytes=1000")
    client.send_raw(b'{"id": 1, "method": "process/list", "pad": "' + b"x" * 5000 + b'"}')
    reply = client.wait_unmatched()
    assert reply["error"]["code"] == -32700 and "longer" in reply["error"]["message"]
    assert client.request("process/list") == {"processes": []}


# ---------------------------------------------------------------- start


def test_pipes_separate_streams_and_exit_code(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert r["stdout"] == b"out\n" and r["stderr"] == b"err\n" and r["exit"] == 3
    seqs = [m["params"]["seq"] for m in r["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [m["method"] for m in r["events"]][-2:] == ["process/exited", "process/closed"]


def test_given_process_id_and_duplicate(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sleep", "5"], "processId": "mine"})
    assert started["processId"] == "mine" and started["pid"] > 0
    assert error_code(server, "process/start", {"argv": ["true"], "processId": "mine"}) == (
        INVALID_REQUEST
    )
    server.request("process/terminate", {"processId": "mine", "graceMs": 100})
    server.wait_closed("mine")


def test_tty_child_leads_session_with_controlling_terminal(server: StdioClient) -> None:
    r = server.run(
        ["sh", "-c", 'tty; stty size; echo "$TERM"; ps -o pid=,pgid=,sid=,tpgid= -p $$'],
        tty=True, size={"rows": 33, "cols": 101},
    )  # fmt: skip
    lines = r["pty"].decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "33 101"
    assert lines[2] == "xterm-256color"
    pid, pgid, sid, tpgid = (int(x) for x in lines[3].split())
    assert pid == pgid == sid == tpgid == r["pid"]  # session leader, foreground of its tty
    assert r["stdout"] == b"" and r["exit"] == 0


def test_pipe_child_leads_its_own_session(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "ps -o pid=,pgid=,sid= -p $$"])
    pid, pgid, sid = (int(x) for x in r["stdout"].split())
    assert pid == pgid == sid == r["pid"]


def test_stdin_is_devnull_without_pipe_stdin(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "cat; echo done"])
    assert r["stdout"] == b"done\n"
    started = server.request("process/start", {"argv": ["sleep", "1"]})
    reply = server.request("process/write", {"processId": started["processId"], "chunk": b64(b"x")})
    assert reply == {"status": "stdinClosed"}


def test_sigpipe_is_default_in_child(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "yes | head -n 2; echo ${PIPESTATUS:-done}"])
    assert r["stdout"].startswith(b"y\ny\n") and r["exit"] == 0


def test_arg0(server: StdioClient) -> None:
    r = server.run(["bash", "-c", 'echo "$0"'], arg0="custom-name")
    assert r["stdout"] == b"custom-name\n"


def test_cwd_default_and_given(server: StdioClient, tmp_path) -> None:
    assert server.run(["pwd"])["stdout"].decode().strip() == os.getcwd()
    assert server.run(["pwd"], cwd=str(tmp_path))["stdout"].decode().strip() == str(tmp_path)


def test_program_found_on_the_childs_path(server: StdioClient, tmp_path) -> None:
    tool = tmp_path / "only-here"
    tool.write_text("#!/bin/sh\necho found-it\n")
    tool.chmod(0o755)
    r = server.run(["only-here"], env={"PATH": str(tmp_path)})
    assert r["stdout"] == b"found-it\n"
    assert error_code(server, "process/start", {"argv": ["only-here"]}) == INTERNAL


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"argv": ["/no/such/program"]}, "no such file"),
        ({"argv": ["no-such-program-xyz"]}, "not found"),
        ({"argv": ["true"], "cwd": "/no/such/dir"}, "cwd does not exist"),
        ({"argv": ["NOEXEC"]}, "permission denied"),
        ({"argv": ["SCRIPT"]}, "exec format error"),
        ({"argv": ["/tmp"]}, "directory"),
    ],
)
def test_spawn_failures_are_clear_and_leave_no_entry(server, params, needle, tmp_path) -> None:
    noexec = tmp_path / "noexec"
    noexec.write_text("data")
    script = tmp_path / "script"
    script.write_text("no shebang here\n")
    script.chmod(0o755)
    argv = params["argv"][0]
    params = {**params, "argv": [{"NOEXEC": str(noexec), "SCRIPT": str(script)}.get(argv, argv)]}
    reply = server.call("process/start", {**params, "processId": "failing"})
    assert reply["error"]["code"] == INTERNAL and needle in reply["error"]["message"]
    assert server.request("process/list") == {"processes": []}
    # the id is free: the failure left nothing behind
    server.run(["true"], processId="failing")


def test_environment_rules(server: StdioClient) -> None:
    def env_of(**params: object) -> dict[str, str]:
        r = server.run(["/usr/bin/env"], **params)
        out = (r["stdout"] + r["pty"]).decode()
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    assert env_of(env={"ONLY": "1"}) == {"ONLY": "1"}
    inherited = env_of()
    assert inherited.get("PATH") == os.environ["PATH"]
    core = env_of(envPolicy={"inherit": "core"}, env={"X": "y"})
    assert set(core) <= {"PATH", "SHELL", "TMPDIR", "TEMP", "TMP", "HOME", "LANG", "LC_ALL",
                         "LC_CTYPE", "LOGNAME", "USER", "X"}
    assert core["X"] == "y"
    none = env_of(envPolicy={"inherit": "none", "set": {"A": "1", "MY_TOKEN": "t"}})
    assert none == {"A": "1", "MY_TOKEN": "t"}  # set comes after the default excludes
    tty_env = env_of(tty=True, env={"PATH": os.environ["PATH"]})
    assert tty_env["TERM"] == "xterm-256color"


def test_default_excludes_drop_secrets() -> None:
    env = dict(os.environ, SOME_API_KEY="k", DB_SECRET="s", gh_token="t", KEEP="1")
    client = StdioClient(env=env)
    try:
        out = client.run(["/usr/bin/env"], envPolicy={})["stdout"].decode()
        names = {line.split("=", 1)[0] for line in out.splitlines()}
        assert "KEEP" in names
        assert not names & {"SOME_API_KEY", "DB_SECRET", "gh_token"}
        out = client.run(["/usr/bin/env"], envPolicy={"ignoreDefaultExcludes": True})["stdout"]
        assert b"DB_SECRET=s" in out
    finally:
        client.close()


def test_size_without_tty_is_validated_and_ignored(server: StdioClient) -> None:
    assert server.run(["true"], size={"rows": 10, "cols": 10})["exit"] == 0
    assert error_code(server, "process/start", {"argv": ["true"], "size": {"rows": 0}}) == (
        INVALID_PARAMS
    )


# ---------------------------------------------------------------- seq, exit, close


def test_output_after_exit_then_closed(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "(sleep 0.3; echo late) & echo early"])
    kinds = [(m["method"], m["params"]["seq"]) for m in r["events"]]
    methods = [k for k, _ in kinds]
    assert methods.index("process/exited") < len(methods) - 2  # output follows the exit
    assert methods[-1] == "process/closed" and methods.count("process/closed") == 1
    assert r["stdout"] == b"early\nlate\n"
    assert [s for _, s in kinds] == list(range(1, len(kinds) + 1))


def test_exit_by_signal_reports_name_and_128_plus_n(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sleep", "30"]})
    server.request("process/signal", {"processId": started["processId"], "signal": "kill"})
    r = summarize(server.wait_closed(started["processId"]))
    assert r["exit"] == 128 + signal.SIGKILL and r["signal"] == "SIGKILL"


def test_coalescing_makes_few_large_chunks(server: StdioClient) -> None:
    r = server.run(["seq", "1", "200000"])
    outputs = [m for m in r["events"] if m["method"] == "process/output"]
    assert r["stdout"] == b"".join(b"%d\n" % i for i in range(1, 200001))
    sizes = [len(base64.b64decode(m["params"]["chunk"])) for m in outputs]
    assert max(sizes) <= 256 * 1024  # ProcessTable.coalesce_max_bytes
    assert len(outputs) < 200000 / 100  # far fewer chunks than lines


def test_coalesce_cap_is_configurable(make_server) -> None:
    client = make_server("--ProcessTable.coalesce_max_bytes=1000")
    r = client.run(["head", "-c", "100000", "/dev/zero"])
    sizes = [len(base64.b64decode(m["params"]["chunk"])) for m in r["events"]
             if m["method"] == "process/output"]
    assert sum(sizes) == 100000 and max(sizes) <= 1000


# ---------------------------------------------------------------- read


def test_read_long_poll_and_cursor(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sh", "-c", "read x; echo got $x"],
                                               "pipeStdin": True})
    pid = started["processId"]
    t0 = time.monotonic()
    empty = server.request("process/read", {"processId": pid, "waitMs": 300})
    assert time.monotonic() - t0 >= 0.25
    assert empty["chunks"] == [] and empty["nextSeq"] == 1 and not empty["exited"]
    reply_id = 9999
    server.send({"id": reply_id, "method": "process/read",
                 "params": {"processId": pid, "waitMs": 5000}})
    server.request("process/write", {"processId": pid, "chunk": b64(b"hello\n")})
    got = server.wait_response(reply_id)["result"]
    assert base64.b64decode(got["chunks"][0]["chunk"]) == b"got hello\n"
    server.wait_closed(pid)
    rest = server.request("process/read", {"processId": pid, "afterSeq": got["nextSeq"] - 1})
    assert rest["chunks"] == [] and rest["exited"] and rest["closed"] and rest["exitCode"] == 0
    assert rest["firstRetainedSeq"] == 1


def test_read_returns_at_once_after_exit_event(server: StdioClient) -> None:
    r = server.run(["true"])
    t0 = time.monotonic()
    got = server.request("process/read", {"processId": r["processId"], "waitMs": 5000})
    assert time.monotonic() - t0 < 2 and got["closed"]


def test_read_max_bytes_returns_first_chunk_always(server: StdioClient) -> None:
    r = server.run(["sh", "-c", "echo aaaa; sleep 0.05; echo bbbb; sleep 0.05; echo cccc"])
    pid = r["processId"]
    one = server.request("process/read", {"processId": pid, "maxBytes": 1})
    assert len(one["chunks"]) == 1 and base64.b64decode(one["chunks"][0]["chunk"]) == b"aaaa\n"
    assert one["nextSeq"] == one["chunks"][0]["seq"] + 1
    two = server.request("process/read", {"processId": pid, "maxBytes": 10})
    assert len(two["chunks"]) == 2


def test_retention_cap_evicts_whole_chunks(make_server) -> None:
    # chunks (64 KiB) smaller than the cap: the newest chunk is always kept, whole
    client = make_server("--ProcessTable.retained_bytes=100000",
                         "--ProcessTable.coalesce_max_bytes=65536")
    r = client.run(["head", "-c", "1000000", "/dev/zero"])
    got = client.request("process/read", {"processId": r["processId"]})
    held = sum(len(base64.b64decode(c["chunk"])) for c in got["chunks"])
    assert 0 < held <= 100000
    assert got["firstRetainedSeq"] > 1  # a reader can tell it lost output
    assert got["chunks"][0]["seq"] == got["firstRetainedSeq"]


def test_retention_time_after_close_then_id_reusable(make_server) -> None:
    client = make_server("--ProcessTable.retention_seconds=0.3")
    r = client.run(["true"], processId="again")
    assert [p["processId"] for p in client.request("process/list")["processes"]] == ["again"]
    wait_until(lambda: client.request("process/list")["processes"] == [], 5)
    assert error_code(client, "process/read", {"processId": "again"}) == INVALID_REQUEST
    client.run(["true"], processId="again")
    assert r["exit"] == 0


# ---------------------------------------------------------------- write / closeStdin


def test_write_order_dedup_and_close_stdin(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["cat"], "pipeStdin": True})
    pid = started["processId"]
    for i in range(200):
        reply = server.request("process/write", {"processId": pid, "chunk": b64(b"%d," % i),
                                                 "writeId": f"w{i}"})
        assert reply == {"status": "accepted"}
    # a retried write is accepted again and not written twice
    assert server.request("process/write", {"processId": pid, "chunk": b64(b"DUP"),
                                            "writeId": "w5"}) == {"status": "accepted"}
    assert server.request("process/closeStdin", {"processId": pid}) == {"status": "accepted"}
    r = summarize(server.wait_closed(pid))
    assert r["stdout"] == b"".join(b"%d," % i for i in range(200)) and r["exit"] == 0
    assert server.request("process/write", {"processId": pid, "chunk": b64(b"x")}) == {
        "status": "stdinClosed"
    }
    assert server.request("process/closeStdin", {"processId": pid}) == {"status": "stdinClosed"}


def test_write_statuses(server: StdioClient) -> None:
    assert server.request("process/write", {"processId": "ghost", "chunk": b64(b"x")}) == {
        "status": "unknownProcess"
    }
    assert server.request("process/closeStdin", {"processId": "ghost"}) == {
        "status": "unknownProcess"
    }
    assert error_code(server, "process/write", {"processId": "ghost", "chunk": "%%%"}) == (
        INVALID_PARAMS
    )
    r = server.run(["true"], pipeStdin=True)
    assert server.request("process/write", {"processId": r["processId"], "chunk": b64(b"x")}) == {
        "status": "stdinClosed"
    }


def test_write_limit(make_server) -> None:
    client = make_server("--ProcessTable.max_write_bytes=1000")
    started = client.request("process/start", {"argv": ["cat"], "pipeStdin": True})
    assert error_code(client, "process/write", {"processId": started["processId"],
                                                "chunk": b64(b"x" * 2000)}) == LIMIT
    client.request("process/closeStdin", {"processId": started["processId"]})
    client.wait_closed(started["processId"])


def test_write_as_notification_runs_without_answer(server: StdioClient) -> None:
    """How the JupyterLab panel sends keystrokes: process/write with no id."""
    started = server.request("process/start", {"argv": ["cat"], "pipeStdin": True})
    pid = started["processId"]
    server.notify("process/write", {"processId": pid, "chunk": b64(b"quiet\n")})
    server.notify("process/write", {"processId": "ghost", "chunk": b64(b"x")})  # refused
    server.wait_output(pid, lambda out: out == b"quiet\n")
    # A request after them is answered in order: by then an answer to either
    # notification (it would carry "id": null) would have arrived. None did.
    server.request("process/closeStdin", {"processId": pid})
    assert not server.unmatched and not server.responses


def test_tty_write_and_close_stdin_sends_eof(server: StdioClient) -> None:
    started = server.request("process/start", {
        "argv": ["sh", "-c", "stty -echo; echo READY; cat; echo END"], "tty": True})
    pid = started["processId"]
    server.wait_for(lambda m: m["method"] == "process/output" and b"READY" in base64.b64decode(
        m["params"]["chunk"]) and m["params"]["processId"] == pid)
    server.request("process/write", {"processId": pid, "chunk": b64(b"typed\n")})
    server.wait_for(lambda m: m["method"] == "process/output" and b"typed" in base64.b64decode(
        m["params"]["chunk"]) and m["params"]["processId"] == pid)
    assert server.request("process/closeStdin", {"processId": pid}) == {"status": "accepted"}
    r = summarize(server.wait_closed(pid))
    assert b"END" in r["pty"] and r["exit"] == 0


# ---------------------------------------------------------------- resize / signal / terminate


def test_resize(server: StdioClient) -> None:
    started = server.request("process/start", {
        "argv": ["sh", "-c", "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done"],
        "tty": True})  # fmt: skip
    pid = started["processId"]
    server.wait_for(lambda m: m["params"].get("processId") == pid and b"ready" in
                    base64.b64decode(m["params"].get("chunk", "")))
    assert server.request("process/resize", {"processId": pid, "rows": 40, "cols": 132}) == {}
    server.wait_for(lambda m: m["params"].get("processId") == pid and b"40 132" in
                    base64.b64decode(m["params"].get("chunk", "")))
    assert error_code(server, "process/resize", {"processId": pid, "rows": 0, "cols": 1}) == (
        INVALID_PARAMS
    )
    assert error_code(server, "process/resize", {"processId": pid, "rows": 5, "cols": 10001}) == (
        INVALID_PARAMS
    )
    assert error_code(server, "process/resize", {"processId": "ghost", "rows": 5, "cols": 5}) == (
        INVALID_REQUEST
    )
    server.request("process/terminate", {"processId": pid, "graceMs": 200})
    server.wait_closed(pid)
    pipe = server.request("process/start", {"argv": ["sleep", "0.1"]})
    assert error_code(server, "process/resize", {"processId": pipe["processId"], "rows": 5,
                                                 "cols": 5}) == INVALID_PARAMS


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_signal_by_name_to_group(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sh", "-c", "sleep 30 & echo $!; wait"]})
    pid = started["processId"]
    grandchild = int(server.wait_output(pid, lambda d: d.endswith(b"\n")))
    # signal only once the grandchild really is `sleep` (not dash between fork and exec)
    wait_until(lambda: _comm(grandchild) == "sleep", 5)
    assert server.request("process/signal", {"processId": pid, "signal": "hangup"}) == {}
    r = summarize(server.wait_closed(pid))
    assert r["exit"] == 128 + signal.SIGHUP and r["signal"] == "SIGHUP"
    wait_gone([grandchild], 2.0)  # the whole group got it
    direct = server.request("process/start", {"argv": ["sleep", "30"]})
    server.request("process/signal", {"processId": direct["processId"], "signal": "interrupt"})
    r = summarize(server.wait_closed(direct["processId"]))
    assert r["exit"] == 130 and r["signal"] == "SIGINT"
    assert error_code(server, "process/signal", {"processId": pid, "signal": "SIGINT"}) == (
        INVALID_PARAMS
    )
    assert server.request("process/signal", {"processId": "ghost", "signal": "kill"}) == {}
    assert server.request("process/signal", {"processId": pid, "signal": "kill"}) == {}


def test_terminate_kills_grandchildren(server: StdioClient) -> None:
    started = server.request("process/start", {
        "argv": ["sh", "-c", "sleep 1000 & echo $!; sleep 1000 & echo $!; wait"]})
    pid = started["processId"]
    text = server.wait_output(pid, lambda data: data.count(b"\n") >= 2)
    grandchildren = [int(x) for x in text.split()]
    assert all(pid_alive(p) for p in grandchildren)
    assert server.request("process/terminate", {"processId": pid}) == {"running": True}
    server.wait_closed(pid)
    wait_gone([*grandchildren, started["pid"]], 2.0)
    assert server.request("process/terminate", {"processId": pid}) == {"running": False}
    assert server.request("process/terminate", {"processId": "ghost"}) == {"running": False}


def test_terminate_escalates_to_sigkill_after_grace(server: StdioClient) -> None:
    started = server.request("process/start", {
        "argv": ["sh", "-c", "trap '' TERM HUP; echo armed; while :; do sleep 0.05; done"]})
    pid = started["processId"]
    server.wait_for(lambda m: m["method"] == "process/output" and m["params"]["processId"] == pid)
    t0 = time.monotonic()
    server.request("process/terminate", {"processId": pid, "graceMs": 300})
    r = summarize(server.wait_closed(pid))
    assert time.monotonic() - t0 >= 0.25
    assert r["signal"] == "SIGKILL"


# ---------------------------------------------------------------- list / subscribe


def test_list_fields(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sleep", "10"], "title": "napper",
                                               "cwd": "/tmp"})
    (entry,) = server.request("process/list")["processes"]
    assert entry["processId"] == started["processId"] and entry["pid"] == started["pid"]
    assert entry["argv"] == ["sleep", "10"] and entry["cwd"] == "/tmp"
    assert entry["tty"] is False and entry["title"] == "napper"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$", entry["startedAt"])
    assert entry["exited"] is False and entry["exitCode"] is None and entry["closed"] is False
    assert entry["signal"] is None and entry["nextSeq"] == 1
    server.request("process/signal", {"processId": started["processId"], "signal": "kill"})
    server.wait_closed(started["processId"])
    (entry,) = server.request("process/list")["processes"]
    assert entry["exited"] is True and entry["exitCode"] == 128 + 9
    assert entry["signal"] == "SIGKILL"


def test_subscribe_replays_then_streams(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sh", "-c", "echo one; read x; echo $x"],
                                               "pipeStdin": True})
    pid = started["processId"]
    server.wait_for(lambda m: m["method"] == "process/output" and m["params"]["processId"] == pid)
    assert server.request("process/unsubscribe", {"processId": pid}) == {}
    server.notifications.clear()
    reply = server.request("process/subscribe", {"processId": pid, "afterSeq": 0})
    assert reply == {"nextSeq": 2}
    replayed = server.wait_for(lambda m: m["params"].get("processId") == pid)
    assert replayed["params"]["seq"] == 1
    server.request("process/write", {"processId": pid, "chunk": b64(b"two\n")})
    r = summarize(server.wait_closed(pid))
    assert r["stdout"] == b"one\ntwo\n"
    # subscribing after the end replays only what is after afterSeq
    server.notifications.clear()
    server.request("process/subscribe", {"processId": pid, "afterSeq": 2})
    server.wait_closed(pid)
    assert [m["params"]["seq"] for m in server.events(pid)] == [3, 4]


def test_unsubscribed_connection_gets_no_notifications(server: StdioClient) -> None:
    started = server.request("process/start", {"argv": ["sh", "-c", "read x; echo $x"],
                                               "pipeStdin": True})
    pid = started["processId"]
    server.request("process/unsubscribe", {"processId": pid})
    server.request("process/write", {"processId": pid, "chunk": b64(b"quiet\n")})
    got = server.request("process/read", {"processId": pid, "waitMs": 5000})
    wait_until(lambda: server.request("process/read", {"processId": pid})["closed"])
    assert base64.b64decode(got["chunks"][0]["chunk"]) == b"quiet\n"
    server.request("process/list")  # a round trip after the close: notifications would be here
    assert server.events(pid) == []


def test_subscribe_unknown_and_bad(server: StdioClient) -> None:
    assert error_code(server, "process/subscribe", {"processId": "ghost"}) == INVALID_REQUEST
    assert error_code(server, "process/subscribe", {"processId": "g", "afterSeq": -1}) == (
        INVALID_PARAMS
    )
    assert error_code(server, "process/unsubscribe", {"processId": "ghost"}) == INVALID_REQUEST


def test_max_processes(make_server) -> None:
    client = make_server("--ProcessTable.max_processes=2")
    for _ in range(2):
        client.request("process/start", {"argv": ["sleep", "10"]})
    assert error_code(client, "process/start", {"argv": ["sleep", "10"]}) == LIMIT


def test_responses_to_notifications_are_ignored(server: StdioClient) -> None:
    server.send({"id": 77, "result": {"whatever": 1}})
    server.send({"method": "process/ack", "params": {"processId": 5}})  # bad notification
    assert server.request("process/list") == {"processes": []}


def test_cli_help_says_what_it_is() -> None:
    import subprocess

    out = subprocess.run([CODEX_EXEC, "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "serve" in out and "shell" in out
    out = subprocess.run([CODEX_EXEC, "serve", "--help-all"],
                         capture_output=True, text=True, check=True).stdout
    assert "ProcessTable.retained_bytes" in out


def test_json_is_one_message_per_line(server: StdioClient) -> None:
    r = server.run(["printf", "a\\nb\\n"])
    for m in r["events"]:
        assert json.dumps(m)  # every notification parsed from one line
