"""Unit tests of the wire types and the environment rules (pure functions)."""

from __future__ import annotations

import pytest

from codex_exec_kernel.envpolicy import apply_policy, child_environment
from codex_exec_kernel.protocol import (
    INVALID_PARAMS,
    EnvPolicy,
    ProtocolError,
    ReadParams,
    StartParams,
    WriteParams,
    decode_bytes,
    encode_bytes,
)

BASE = {
    "PATH": "/usr/bin", "HOME": "/home/u", "API_KEY": "k", "MY_SECRET": "s",
    "GH_TOKEN": "t", "FOO": "foo", "LANG": "C.UTF-8", "keyring": "lower",
}  # fmt: skip


def test_env_alone_is_the_whole_environment() -> None:
    assert child_environment(BASE, {"ONLY": "1"}, None, tty=False) == {"ONLY": "1"}


def test_neither_inherits_everything() -> None:
    assert child_environment(BASE, None, None, tty=False) == BASE


def test_tty_sets_term_unless_env_names_it() -> None:
    assert child_environment(BASE, None, None, tty=True)["TERM"] == "xterm-256color"
    assert child_environment(BASE, {"TERM": "dumb"}, None, tty=True)["TERM"] == "dumb"


def test_policy_all_drops_default_excludes_case_insensitively() -> None:
    env = apply_policy(EnvPolicy(), BASE)
    assert "API_KEY" not in env and "MY_SECRET" not in env and "GH_TOKEN" not in env
    assert "keyring" not in env  # *KEY* matches case-insensitively
    assert env["FOO"] == "foo"


def test_policy_core_keeps_core_only() -> None:
    assert apply_policy(EnvPolicy(inherit="core"), BASE) == {
        "PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8"
    }


def test_policy_steps_in_order() -> None:
    policy = EnvPolicy(
        inherit="all", ignore_default_excludes=True, exclude=("F?O",),
        set={"NEW": "n", "FOO": "set-wins-over-exclude"}, include_only=("*O*", "NEW"),
    )  # fmt: skip
    env = apply_policy(policy, BASE)
    assert env == {"FOO": "set-wins-over-exclude", "NEW": "n", "GH_TOKEN": "t", "HOME": "/home/u"}


def test_policy_then_env_overlay() -> None:
    policy = EnvPolicy(inherit="none", set={"A": "policy"})
    assert child_environment(BASE, {"A": "overlay", "B": "b"}, policy, tty=False) == {
        "A": "overlay", "B": "b"
    }


def test_bytes_round_trip_both_encodings() -> None:
    data = bytes(range(256))
    assert decode_bytes(encode_bytes(data, None), []) == data
    bufs: list[bytes] = []
    ref = encode_bytes(data, bufs)
    assert ref == {"buffer": 0}
    assert decode_bytes(ref, bufs) == data


@pytest.mark.parametrize("bad", ["not base64!", "YQ", {"buffer": 3}, {"buffer": "0"}, 5, None])
def test_bad_bytes_are_invalid_params(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_bytes(bad, [b"x"])
    assert info.value.code == INVALID_PARAMS


@pytest.mark.parametrize(
    "params",
    [
        None, [], {"argv": []}, {"argv": "ls"}, {"argv": ["a\0b"]}, {"argv": ["ls", 1]},
        {"argv": ["ls"], "cwd": "relative"}, {"argv": ["ls"], "cwd": "/a\0b"},
        {"argv": ["ls"], "env": {"A": 1}}, {"argv": ["ls"], "env": {"A=B": "x"}},
        {"argv": ["ls"], "env": {"A": "x\0"}}, {"argv": ["ls"], "tty": "yes"},
        {"argv": ["ls"], "size": {"rows": 0, "cols": 80}},
        {"argv": ["ls"], "size": {"rows": 24, "cols": 100000}},
        {"argv": ["ls"], "envPolicy": {"inherit": "some"}},
        {"argv": ["ls"], "envPolicy": {"exclude": "X"}}, {"argv": ["ls"], "processId": ""},
        {"argv": ["ls"], "processId": 7}, {"argv": ["x" * (3 * 1024 * 1024)]},
    ],
)
def test_start_params_rejected(params: object) -> None:
    with pytest.raises(ProtocolError) as info:
        StartParams.parse(params)
    assert info.value.code == INVALID_PARAMS


def test_start_params_defaults() -> None:
    parsed = StartParams.parse({"argv": ["ls"]})
    assert parsed.spec.tty is False and parsed.spec.size == (24, 80)
    assert parsed.process_id is None and parsed.spec.env is None


@pytest.mark.parametrize(
    "params",
    [{"processId": "p", "afterSeq": -1}, {"processId": "p", "afterSeq": True},
     {"processId": "p", "maxBytes": 0}, {"processId": "p", "waitMs": 1e9}, {}],
)
def test_read_params_rejected(params: object) -> None:
    with pytest.raises(ProtocolError):
        ReadParams.parse(params)


def test_write_params_need_chunk() -> None:
    with pytest.raises(ProtocolError):
        WriteParams.parse({"processId": "p"}, [])
    assert WriteParams.parse({"processId": "p", "chunk": "aGk="}, []).chunk == b"hi"
