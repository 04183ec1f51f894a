"""``codex-exec session`` survives a fuzz of corrupted store contents without a traceback.

Each seed builds a store holding one real running session among hand-made bad ones:
random bytes, JSON of the wrong shape or wrong field types, missing files, symlinks
(to a secret file, to /dev/zero, for the session directory itself), FIFOs and
directories where files belong, a group-writable session directory. Forged pids
point at a victim process. Every command (list, logs, attach, signal, delete) on
every entry must end with status 0 or 1 and at most one line on stderr; the victim
and the secret must be untouched, the real session must keep running until it is
deleted, and deleting every entry must leave the store empty.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sessions_adversary import assert_no_traceback, codex_exec, good_meta, write_session
from waiting import pid_alive

from codex_exec_kernel.protocol import SpawnSpec
from codex_exec_kernel.sessions.api import SessionManager

pytest_plugins = ["sessions_fixtures"]

META_FIELDS = list(good_meta("x"))


def _wrong_values(victim: int) -> list[Any]:
    return [None, 0, 1, -1, 2**70, "x", "", [], {}, True, 1.5, victim, [victim], {"rows": -1}]


class Planter:
    """Makes one random bad session directory per call."""

    def __init__(self, rng: random.Random, home: str, victim: int, secret: Path) -> None:
        self.rng = rng
        self.home = home
        self.victim = victim
        self.secret = secret
        self.kinds: list[Callable[[str], None]] = [
            self.random_bytes, self.wrong_shape, self.wrong_field, self.missing_meta,
            self.symlinked_file, self.special_file, self.symlinked_dir, self.plain_file,
            self.writable_dir, self.forged_running, self.bad_record,
        ]  # fmt: skip

    def plant(self, sid: str) -> None:
        self.rng.choice(self.kinds)(sid)
        path = Path(self.home, "sessions", sid)
        if path.exists() or path.is_symlink():
            os.utime(path, (1, 1), follow_symlinks=False)  # not "being created"

    def meta(self, sid: str, **overrides: Any) -> dict[str, Any]:
        return good_meta(sid, pid=self.victim, supervisorPid=self.victim, **overrides)

    def random_bytes(self, sid: str) -> None:
        data = self.rng.randbytes(self.rng.randrange(0, 300))
        write_session(self.home, sid, {"meta.json": data, "output.log": b"log\n"})

    def wrong_shape(self, sid: str) -> None:
        value = self.rng.choice([[], 5, "x", None, True, {}, [self.meta(sid)]])
        write_session(self.home, sid, {"meta.json": json.dumps(value)})

    def wrong_field(self, sid: str) -> None:
        meta = self.meta(sid, endedAt=None, exitCode=None)
        for _ in range(self.rng.randrange(1, 4)):
            field = self.rng.choice(META_FIELDS)
            if self.rng.random() < 0.2:
                meta.pop(field, None)
            else:
                meta[field] = self.rng.choice(_wrong_values(self.victim))
        write_session(self.home, sid, {"meta.json": json.dumps(meta)})

    def missing_meta(self, sid: str) -> None:
        write_session(self.home, sid, {"output.log": b"orphan output\n"})

    def symlinked_file(self, sid: str) -> None:
        d = write_session(self.home, sid, {})
        name = self.rng.choice(["meta.json", "output.log", "lock", "record", "sock"])
        if name != "meta.json":
            (d / "meta.json").write_text(json.dumps(self.meta(sid)))
        (d / name).symlink_to(self.rng.choice([self.secret, Path("/dev/zero"), d / "nowhere"]))

    def special_file(self, sid: str) -> None:
        d = write_session(self.home, sid, {})
        name = self.rng.choice(["meta.json", "output.log", "lock", "record"])
        if name != "meta.json":
            (d / "meta.json").write_text(json.dumps(self.meta(sid, endedAt=None, exitCode=None)))
        if self.rng.random() < 0.5:
            os.mkfifo(d / name, 0o600)
        else:
            (d / name).mkdir(mode=0o700)

    def symlinked_dir(self, sid: str) -> None:
        target = Path(self.home, "elsewhere-" + sid)
        write_session(self.home, "tmp-" + sid, {"meta.json": json.dumps(self.meta(sid))})
        Path(self.home, "sessions", "tmp-" + sid).rename(target)
        Path(self.home, "sessions", sid).symlink_to(target)

    def plain_file(self, sid: str) -> None:
        Path(self.home, "sessions", sid).write_bytes(self.rng.randbytes(20))

    def writable_dir(self, sid: str) -> None:
        d = write_session(self.home, sid, {"meta.json": json.dumps(self.meta(sid))})
        d.chmod(0o777)

    def forged_running(self, sid: str) -> None:
        write_session(self.home, sid, {
            "meta.json": json.dumps(self.meta(sid, endedAt=None, exitCode=None, startTicks=1)),
            "sock": b"not a socket",
        })  # fmt: skip

    def bad_record(self, sid: str) -> None:
        write_session(self.home, sid, {
            "meta.json": json.dumps(self.meta(sid, endedAt=None, exitCode=None, startTicks=1)),
            "record": self.rng.choice([b"\xff" * 10, b'{"endedAt": 5}', b"[]", b""]),
        })  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_cli_survives_a_corrupted_store(
    manager: SessionManager, session_home: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    secret = tmp_path / "secret"
    secret.write_text("secret\n")
    secret.chmod(0o600)
    try:
        real = manager.create(SpawnSpec(["sleep", "300"]), session_id="real")
        planter = Planter(rng, session_home, victim.pid, secret)
        bad = [f"bad{n}" for n in range(8)]
        for sid in bad:
            planter.plant(sid)
        for args in (["list"], ["list", "--json"]):
            result = codex_exec(session_home, *args)
            assert result.returncode == 0, (args, result.stderr)
            assert "real" in result.stdout
        for sid in bad:
            for args in (["logs", sid], ["logs", sid, "--tail", "2"], ["attach", sid],
                         ["signal", sid, "term"]):  # fmt: skip
                assert_no_traceback(codex_exec(session_home, *args, timeout=30))
            assert pid_alive(victim.pid), (sid, args)
            assert manager.get("real").status == "running"
        for sid in [*bad, "real"]:
            result = codex_exec(session_home, "delete", sid, "--grace", "0.3")
            assert result.returncode == 0, (sid, result.stderr)
        assert list(Path(session_home, "sessions").iterdir()) == []
        assert not pid_alive(real.meta.pid)
        assert pid_alive(victim.pid) and secret.read_text() == "secret\n"
    finally:
        victim.kill()
        victim.wait()
