"""Background sessions through the Python API: real supervisors, real children, no mocks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from sessions_helpers import REPO, read_until, session_env
from waiting import pid_alive, scaled, wait_until

from codex_exec_kernel.pgroup import group_alive
from codex_exec_kernel.protocol import SpawnSpec
from codex_exec_kernel.sessions import wire
from codex_exec_kernel.sessions.api import SessionManager
from codex_exec_kernel.sessions.launch import LaunchError
from codex_exec_kernel.sessions.store import (
    AmbiguousSelector,
    InvalidSessionId,
    SessionExists,
    SessionNotFound,
    lock_held,
)
from codex_exec_kernel.sessions.terminal import DetachMatcher, parse_keys

pytest_plugins = ["sessions_fixtures"]


def status(manager: SessionManager, sid: str) -> str:
    return manager.get(sid).status


def log_of(manager: SessionManager, sid: str) -> bytes:
    return (manager.store.paths(sid).log and open(manager.store.paths(sid).log, "rb").read())


# --------------------------------------------------------------------------- lifetime


def test_session_outlives_its_starter(manager: SessionManager, session_home: str) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from codex_exec_kernel.protocol import SpawnSpec\n"
         "from codex_exec_kernel.sessions.api import SessionManager\n"
         "spec = SpawnSpec(['sh', '-c', 'echo started; exec cat'], tty=True)\n"
         "info = SessionManager().create(spec)\n"
         "print(info.id, flush=True)\n"
         "time.sleep(600)\n"],
        stdout=subprocess.PIPE, env=session_env(session_home), cwd=str(REPO),
        start_new_session=True,
    )  # fmt: skip
    assert starter.stdout is not None
    sid = starter.stdout.readline().decode().strip()
    assert sid, "the starter printed no id"
    os.killpg(starter.pid, signal.SIGKILL)  # the starter and everything in its group
    starter.wait(scaled(10))
    info = manager.get(sid)
    assert info.status == "running"
    assert pid_alive(info.meta.pid) and pid_alive(info.meta.supervisor_pid)
    with open(f"/proc/{info.meta.supervisor_pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid != starter.pid

    async def talk() -> bytes:
        client = await manager.attach(sid, 0)
        client.write(b"still here\r")
        out = await read_until(client, b"still here\r\nstill here")
        client.close()
        return out

    out = asyncio.run(talk())
    assert out.startswith(b"started")
    assert manager.get(sid).status == "running"


def test_exit_status_is_recorded(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "echo bye; exit 3"])).id
    wait_until(lambda: status(manager, sid) == "exited", message="exit")
    info = manager.get(sid)
    assert (info.meta.exit_code, info.meta.signal) == (3, None)
    assert info.meta.ended_at and info.output_bytes == 4
    # The exit is recorded before the supervisor lets go of its lock and exits.
    wait_until(lambda: not lock_held(manager.store.paths(sid).lock), message="lock released")
    wait_until(lambda: not pid_alive(info.meta.supervisor_pid), message="supervisor exit")
    assert not os.path.exists(manager.store.paths(sid).sock)

    sid2 = manager.create(SpawnSpec(["sleep", "60"])).id
    assert manager.signal(sid2, signal.SIGTERM)
    wait_until(lambda: status(manager, sid2) == "exited", message="exit by signal")
    meta = manager.get(sid2).meta
    assert (meta.exit_code, meta.signal) == (128 + signal.SIGTERM, "SIGTERM")
    assert not manager.signal(sid2, signal.SIGTERM)


def test_spawn_failure_leaves_nothing(manager: SessionManager) -> None:
    with pytest.raises(LaunchError, match="no such file"):
        manager.create(SpawnSpec(["definitely-not-a-program-xyz"]), session_id="nope")
    with pytest.raises(LaunchError, match="cwd does not exist"):
        manager.create(SpawnSpec(["true"], cwd="/nonexistent/dir"))
    assert manager.list() == []
    assert os.listdir(manager.store.root) == []


def test_supervisor_sigterm_ends_the_group(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "sleep 300 & echo ready; wait"])).id
    info = manager.get(sid)
    wait_until(lambda: b"ready" in log_of(manager, sid), message="ready")
    os.kill(info.meta.supervisor_pid, signal.SIGTERM)
    wait_until(lambda: not group_alive(info.meta.pid), message="group to end")
    wait_until(lambda: not pid_alive(info.meta.supervisor_pid), message="supervisor to end")
    info = manager.get(sid)
    assert info.status == "exited"
    assert info.meta.signal in ("SIGHUP", "SIGTERM")


def test_lost_session_keeps_its_log(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "echo before-loss; exec sleep 300"])).id
    meta = manager.get(sid).meta
    wait_until(lambda: b"before-loss" in log_of(manager, sid), message="output")
    os.kill(meta.supervisor_pid, signal.SIGKILL)
    wait_until(lambda: status(manager, sid) == "lost", message="lost")
    chunk = manager.read_log(sid)
    assert chunk.data == b"before-loss\n"
    assert [i.status for i in manager.list()] == ["lost"]

    async def replay() -> tuple[bytes, object]:
        client = await manager.attach(sid, 0)
        assert not client.live
        data = b"".join([e.data async for e in client.events() if isinstance(e, wire.Output)])
        return data, client.exit

    data, exit_event = asyncio.run(replay())
    assert data == b"before-loss\n" and exit_event is None
    assert group_alive(meta.pid)  # the orphaned sleep: delete must end it
    manager.delete(sid)
    assert not group_alive(meta.pid)
    assert not os.path.exists(manager.store.paths(sid).dir)


# --------------------------------------------------------------------------- output


def test_big_output_without_clients_is_all_logged(manager: SessionManager, tmp_path) -> None:
    total = 50 * 1024 * 1024
    digest_file = tmp_path / "digest"
    writer = (
        "import hashlib, os, sys\n"
        f"total = {total}\n"
        "h = hashlib.sha256(); out = sys.stdout.buffer; sent = 0; n = 0\n"
        "while sent < total:\n"
        "    block = hashlib.sha512(str(n).encode()).digest() * 1000\n"
        "    block = block[: total - sent]\n"
        "    out.write(block); h.update(block); sent += len(block); n += 1\n"
        "out.flush()\n"
        f"open({str(digest_file)!r}, 'w').write(h.hexdigest())\n"
    )
    sid = manager.create(SpawnSpec([sys.executable, "-c", writer])).id
    sup = manager.get(sid).meta.supervisor_pid
    peak = 0

    def done() -> bool:
        nonlocal peak
        try:
            with open(f"/proc/{sup}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        return status(manager, sid) == "exited"

    wait_until(done, timeout=120, message="the writer to finish", interval=0.05)
    info = manager.get(sid)
    assert info.meta.exit_code == 0
    assert info.output_bytes == total
    h = hashlib.sha256()
    with open(manager.store.paths(sid).log, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    assert h.hexdigest() == digest_file.read_text()
    assert peak < 100_000, f"supervisor RSS peaked at {peak} KiB"


def test_attach_sees_the_whole_log_and_writes(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "echo one; echo two >&2; exec cat"])).id
    wait_until(lambda: manager.get(sid).output_bytes == 8, message="first output")

    async def go() -> None:
        client = await manager.attach(sid, 0)
        assert client.live and client.welcome is not None and client.welcome.offset == 0
        client.write(b"three\n")
        await read_until(client, b"three\n")
        assert client.offset == 14
        assert client.close_stdin()  # cat sees EOF and exits 0
        ended = [e async for e in client.events()]
        assert isinstance(ended[-1], wire.Exit) and ended[-1].exit_code == 0

    asyncio.run(go())
    assert manager.read_log(sid).data == b"one\ntwo\nthree\n"


def test_pipe_session_keeps_streams_apart_live(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "read x; echo out; echo err >&2; read y"])).id

    async def go() -> list[tuple[str, bytes]]:
        client = await manager.attach(sid)
        client.write(b"go\n")
        seen: list[tuple[str, bytes]] = []
        async for event in client.events():
            if isinstance(event, wire.Output):
                seen.append((event.stream, event.data))
                if b"err" in b"".join(d for _, d in seen):
                    break
        client.write(b"end\n")
        return seen

    seen = asyncio.run(go())
    assert ("stdout", b"out\n") in seen and ("stderr", b"err\n") in seen
    wait_until(lambda: status(manager, sid) == "exited", message="exit")


def test_two_clients_see_and_write(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["cat"], tty=True)).id

    async def go() -> None:
        a = await manager.attach(sid)
        b = await manager.attach(sid)
        seen_a, seen_b = bytearray(), bytearray()
        a.write(b"from-a\r")
        await read_until(a, b"from-a\r\nfrom-a", seen=seen_a)
        await read_until(b, b"from-a\r\nfrom-a", seen=seen_b)
        b.write(b"from-b\r")
        await read_until(a, b"from-b\r\nfrom-b", seen=seen_a)
        await read_until(b, b"from-b\r\nfrom-b", seen=seen_b)
        b.resize(40, 120)
        a.close()
        b.close()

    asyncio.run(go())
    assert status(manager, sid) == "running"


def test_default_attach_offset_is_the_last_64k(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "head -c 100000 /dev/zero; exec sleep 300"])).id
    wait_until(lambda: manager.get(sid).output_bytes == 100000, message="output")

    async def go() -> int:
        client = await manager.attach(sid)
        assert client.welcome is not None
        offset = client.welcome.offset
        client.close()
        return offset

    assert asyncio.run(go()) == 100000 - 64 * 1024


def test_attach_to_an_ended_session_replays_then_exits(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sh", "-c", "echo done-here; exit 5"], tty=True)).id
    wait_until(lambda: status(manager, sid) == "exited", message="exit")

    async def go() -> list[object]:
        client = await manager.attach(sid, 2)
        return [e async for e in client.events()]

    events = asyncio.run(go())
    assert isinstance(events[0], wire.Output) and events[0].data == b"ne-here\r\n"
    assert events[0].stream == "pty"
    assert isinstance(events[-1], wire.Exit) and events[-1].exit_code == 5


def test_slow_client_does_not_block_the_child(manager: SessionManager) -> None:
    script = "head -c 20000000 /dev/zero; echo; echo finished"
    sid = manager.create(SpawnSpec(["sh", "-c", script])).id

    async def go() -> None:
        client = await manager.attach(sid, 0)
        # Never read: the child must still finish and everything reach the log.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: wait_until(lambda: status(manager, sid) == "exited", 30.0, message="exit")
        )
        total = 0
        async for event in client.events():
            if isinstance(event, wire.Output):
                total += len(event.data)
        assert total == 20000000 + 10

    asyncio.run(go())


# --------------------------------------------------------------------------- store


@pytest.mark.parametrize("bad", ["../x", "", "a" * 65, "has space", "a/b", "..", "é", "x\0y"])
def test_bad_ids_are_refused(manager: SessionManager, bad: str) -> None:
    with pytest.raises(InvalidSessionId):
        manager.create(SpawnSpec(["true"]), session_id=bad)
    assert not os.path.exists(manager.store.root) or os.listdir(manager.store.root) == []
    with pytest.raises(InvalidSessionId):
        manager.get(bad)


def test_taken_id_is_an_error(manager: SessionManager) -> None:
    manager.create(SpawnSpec(["sleep", "300"]), session_id="A_b-9" + "z" * 59)
    with pytest.raises(SessionExists):
        manager.create(SpawnSpec(["true"]), session_id="A_b-9" + "z" * 59)
    assert len(manager.list()) == 1


def test_generated_ids_are_two_words(manager: SessionManager) -> None:
    ids = {manager.create(SpawnSpec(["true"])).id for _ in range(3)}
    assert len(ids) == 3
    for sid in ids:
        assert len(sid.split("-")) >= 2 and sid.replace("-", "").isalnum()


def test_permissions(manager: SessionManager) -> None:
    sid = manager.create(SpawnSpec(["sleep", "300"]), session_id="p" * 64).id
    paths = manager.store.paths(sid)
    assert stat.S_IMODE(os.stat(manager.store.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(paths.dir).st_mode) == 0o700
    for path in (paths.meta, paths.log, paths.lock):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    st = os.stat(paths.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert len(paths.sock) > 100  # the tmp home is deep: exercises the /proc/self/fd route


def test_meta_json_fields(manager: SessionManager) -> None:
    import json

    sid = manager.create(SpawnSpec(["sh", "-c", "exit 0"], cwd="/tmp")).id
    wait_until(lambda: status(manager, sid) == "exited", message="exit")
    with open(manager.store.paths(sid).meta) as f:
        meta = json.load(f)
    for key in ("id", "argv", "cwd", "tty", "pid", "supervisorPid", "createdAt", "endedAt",
                "exitCode", "signal", "status"):
        assert key in meta, key
    assert meta["cwd"] == "/tmp" and meta["status"] == "exited" and meta["exitCode"] == 0
    assert not [n for n in os.listdir(manager.store.paths(sid).dir) if ".tmp." in n]


def test_selectors(manager: SessionManager) -> None:
    for sid in ("alpha-one", "alpha-two", "beta"):
        manager.create(SpawnSpec(["sleep", "300"]), session_id=sid)
    assert [i.id for i in manager.list()] == ["beta", "alpha-two", "alpha-one"]
    assert manager.resolve("0").id == "beta"
    assert manager.resolve("2").id == "alpha-one"
    assert manager.resolve("alpha-one").id == "alpha-one"
    assert manager.resolve("b").id == "beta"
    assert manager.resolve("alpha-t").id == "alpha-two"
    with pytest.raises(AmbiguousSelector, match=r"alpha-(one|two).*alpha-(one|two)"):
        manager.resolve("alpha")
    with pytest.raises(SessionNotFound, match="zzz"):
        manager.resolve("zzz")
    with pytest.raises(SessionNotFound, match="index 3"):
        manager.resolve("3")


# --------------------------------------------------------------------------- delete


def test_delete_running_exited_and_lost(manager: SessionManager) -> None:
    running = manager.create(SpawnSpec(["sh", "-c", "sleep 300 & sleep 300"], tty=True)).id
    exited = manager.create(SpawnSpec(["true"])).id
    lost = manager.create(SpawnSpec(["sh", "-c", "trap '' HUP; sleep 300"])).id
    wait_until(lambda: status(manager, exited) == "exited", message="exit")
    lost_meta = manager.get(lost).meta
    os.kill(lost_meta.supervisor_pid, signal.SIGKILL)
    wait_until(lambda: status(manager, lost) == "lost", message="lost")
    metas = {sid: manager.get(sid).meta for sid in (running, exited, lost)}
    started = time.monotonic()
    for sid, meta in metas.items():
        manager.delete(sid, grace=1.0)
        assert not os.path.exists(manager.store.paths(sid).dir)
        assert not group_alive(meta.pid), sid
        assert not pid_alive(meta.supervisor_pid), sid
    assert time.monotonic() - started < 10
    assert manager.list() == []
    with pytest.raises(SessionNotFound):
        manager.delete(running)


# --------------------------------------------------------------------------- terminal keys


def test_detach_key_matching() -> None:
    m = DetachMatcher([parse_keys("C-\\"), parse_keys("C-b d")])
    assert m.feed(b"abc") == (b"abc", False)
    assert m.feed(b"x\x1cy") == (b"x", True)
    m = DetachMatcher([parse_keys("C-\\"), parse_keys("C-b d")])
    assert m.feed(b"a\x02") == (b"a", False)  # held: maybe the start of C-b d
    assert m.feed(b"x") == (b"\x02x", False)
    assert m.feed(b"\x02") == (b"", False)
    assert m.feed(b"d") == (b"", True)
    assert parse_keys("C-b d") == b"\x02d" and parse_keys("^C") == b"\x03"
