"""%sessions shows commands as typed and times one way, and its HTML is never typeset."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

import pytest
from kernel_helpers import start_kernel
from sessions_adversary import good_meta

from codex_exec_kernel.sessions.meta import MetaError, SessionMeta
from codex_exec_kernel.showtext import command_text, one_line, when_text

pytest_plugins = ["sessions_fixtures"]

TYPED = "bash -c 'for i in $(seq 1 600); do :; done; echo $HOME done'"


def test_command_text_is_what_was_typed() -> None:
    assert command_text(["/bin/bash", "-c", TYPED], TYPED) == TYPED
    assert command_text(["python", "train.py", "--lr", "0.1 0.2"]) == (
        "python train.py --lr '0.1 0.2'")  # fmt: skip
    assert one_line("for i in 1 2\ndo echo $i\ndone") == "for i in 1 2 …"


def test_meta_display_is_a_string_or_null_and_nothing_else() -> None:
    meta = SessionMeta.from_json(good_meta("s1", display=TYPED))
    assert meta.display == TYPED and SessionMeta.from_json(meta.to_json()) == meta
    assert SessionMeta.from_json(good_meta("s1", display=None)).display is None
    legacy = good_meta("s1")
    del legacy["display"]  # a meta.json written before the field existed
    assert SessionMeta.from_json(legacy).display is None
    for bad in (5, ["echo"], {"x": 1}, True):
        with pytest.raises(MetaError, match="'display' must be a string"):
            SessionMeta.from_json(good_meta("s1", display=bad))


def test_one_time_format_with_the_age() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    then = (now - timedelta(minutes=3, seconds=5)).isoformat().replace("+00:00", "Z")
    local = (now - timedelta(minutes=3, seconds=5)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert when_text(then, now) == f"{local} (3 min ago)"
    assert when_text(None) == "-"


def test_sessions_table_in_a_kernel(session_home: str) -> None:
    km = start_kernel(env=dict(os.environ, CODEX_EXEC_HOME=session_home))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive(f"%exec --bg --id typed {TYPED}", timeout=60)
        assert reply["content"]["status"] == "ok"
        msgs: list[dict] = []
        reply = kc.execute_interactive("%sessions", timeout=60, output_hook=msgs.append)
        (result,) = [m["content"]["data"] for m in msgs if m["msg_type"] == "execute_result"]
        html, text = result["text/html"], result["text/plain"]
        assert 'class="codex-exec-sessions mathjax_ignore tex2jax_ignore"' in html
        assert "<code" in html and ">bash -c &#x27;for i in $(seq 1 600)" in html
        assert "/bin/bash -c" not in re.sub(r'title="[^"]*"', "", html)  # argv: tooltip only
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\)", html)
        assert TYPED in text and re.search(r"\(\d+ s ago\)", text)
        listed = kc.execute_interactive("%exec --capture --quiet codex-exec session list --json",
                                        timeout=60)  # fmt: skip
        assert listed["content"]["status"] == "ok"
        kc.execute_interactive("%sessions --delete typed", timeout=60)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
