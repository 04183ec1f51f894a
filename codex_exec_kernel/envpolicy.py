"""The environment rules of ``process/start`` and ``session/create``.

Kept apart from spawning because the rules are pure data transformations that the
process table, the session supervisor and the tests all share.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping

from .protocol import EnvPolicy, SpawnSpec

CORE_VARS = (
    "PATH", "SHELL", "TMPDIR", "TEMP", "TMP", "HOME",
    "LANG", "LC_ALL", "LC_CTYPE", "LOGNAME", "USER",
)  # fmt: skip
DEFAULT_EXCLUDES = ("*KEY*", "*SECRET*", "*TOKEN*")


def matcher(globs: Iterable[str]) -> Callable[[str], bool]:
    """One compiled test for a list of case-insensitive ``*``/``?`` globs (``[`` is
    literal, as in the reference). Compiled once per request: matching each variable
    against each glob with ``fnmatch`` thrashed its pattern cache and held the loop
    for a minute with 40,000 globs (the count is capped too: ``max_env_globs``)."""
    # fnmatch.translate makes each glob a regex without catastrophic backtracking.
    # One regex per glob: a single alternation of hundreds compiles in quadratic time.
    patterns = [re.compile(fnmatch.translate(g.upper().replace("[", "[[]"))) for g in globs]
    return lambda name: any(p.match(name.upper()) for p in patterns)


_default_excluded = matcher(DEFAULT_EXCLUDES)


def apply_policy(policy: EnvPolicy, base: Mapping[str, str]) -> dict[str, str]:
    """Build an environment from ``base`` by the policy's steps, in the protocol's order."""
    if policy.inherit == "all":
        env = dict(base)
    elif policy.inherit == "core":
        env = {k: v for k, v in base.items() if k in CORE_VARS}
    else:
        env = {}
    if not policy.ignore_default_excludes:
        env = {k: v for k, v in env.items() if not _default_excluded(k)}
    if policy.exclude:
        excluded = matcher(policy.exclude)
        env = {k: v for k, v in env.items() if not excluded(k)}
    env.update(policy.set)
    if policy.include_only:
        included = matcher(policy.include_only)
        env = {k: v for k, v in env.items() if included(k)}
    return env


def child_environment(
    base: Mapping[str, str],
    env: Mapping[str, str] | None,
    policy: EnvPolicy | None,
    tty: bool,
) -> dict[str, str]:
    """The exact environment a child gets.

    ``env`` alone is the whole environment; with a policy it is laid over the policy's
    result; with neither the child inherits ``base``. A tty child gets
    ``TERM=xterm-256color`` unless ``env`` names ``TERM``, since every client of ours
    renders with xterm.js or a real terminal.
    """
    if policy is not None:
        result = apply_policy(policy, base)
        result.update(env or {})
    elif env is not None:
        result = dict(env)
    else:
        result = dict(base)
    if tty and not (env and "TERM" in env):
        result["TERM"] = "xterm-256color"
    return result


def resolve(
    spec: SpawnSpec, base_env: Mapping[str, str] | None = None, default_cwd: str | None = None
) -> tuple[dict[str, str], str]:
    """The child's exact environment and cwd for ``spec``: one rule for the process
    table and the background sessions. ``base_env`` defaults to this process's
    environment, ``default_cwd`` to its cwd; a relative cwd (CLI, magics) is made
    absolute against ours."""
    base = os.environ if base_env is None else base_env
    cwd = spec.cwd or default_cwd or os.getcwd()
    if not os.path.isabs(cwd):
        cwd = os.path.abspath(cwd)
    return child_environment(base, spec.env, spec.env_policy, spec.tty), cwd


def environ_with(
    overrides: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``overrides`` laid over it
    (``--env K=V``); a kernel's magics pass the kernel's environment (kernelenv.py)."""
    return {**(os.environ if base is None else base), **overrides}
