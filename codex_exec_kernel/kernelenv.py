"""The kernel's environment and directory for the processes a kernel starts.

A user who runs ``%exec pip install x`` expects ``import x`` to work in the next cell,
and a user who ran ``%cd data`` expects the next shell to start in ``data``. The
server's ``PATH`` (a pyenv shim, a system Python) and the kernel's launch directory
give neither, so every process started through a kernel (magics, Kernel Terminal,
client, ``session/create``) gets, unless its request says otherwise:

* the kernel's interpreter first on ``PATH`` and ``VIRTUAL_ENV`` or
  ``CONDA_PREFIX``/``CONDA_DEFAULT_ENV`` set when the kernel runs in one
  (:meth:`KernelEnvironment.environ`);
* the kernel's current directory at the time it starts (:meth:`KernelEnvironment.cwd`);
* for a login shell (``bash -l``, ``zsh -l``: what the Kernel Terminal runs), the
  user's normal start-up files and then the kernel's environment on top, because
  Debian's ``/etc/profile`` resets ``PATH`` (:meth:`KernelEnvironment.command`).

The table calls these through its ``spawn_hook`` (see ``table.py``); ``codex-exec
serve`` installs none and behaves as before.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from traitlets import Bool
from traitlets.config import Configurable

#: Variables a venv/conda activation sets; kept in sync with what ``activate`` does.
_ACTIVATION_VARS = ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV")
_USER_ZDOTDIR = "CODEX_EXEC_USER_ZDOTDIR"


@dataclass(frozen=True)
class Interpreter:
    """Where the kernel's Python lives (``sys.executable``, ``sys.prefix``...)."""

    executable: str
    prefix: str
    base_prefix: str

    @classmethod
    def current(cls) -> Interpreter:
        return cls(sys.executable, sys.prefix, sys.base_prefix)

    @property
    def bindir(self) -> str:
        # Not resolved: a venv's bin/python is a symlink to the base interpreter.
        return os.path.dirname(os.path.abspath(self.executable))

    def activation(self) -> dict[str, str]:
        """What ``activate`` would set, apart from ``PATH``."""
        values: dict[str, str] = {}
        if self.prefix != self.base_prefix:
            values["VIRTUAL_ENV"] = self.prefix
        if os.path.isdir(os.path.join(self.prefix, "conda-meta")):
            values["CONDA_PREFIX"] = self.prefix
            is_base = os.path.isdir(os.path.join(self.prefix, "condabin"))
            values["CONDA_DEFAULT_ENV"] = "base" if is_base else os.path.basename(self.prefix)
        return values


def prepend_path(path: str | None, directory: str) -> str:
    """``directory`` first on ``path``, once."""
    parts = [p for p in (path or "").split(os.pathsep) if p and p != directory]
    return os.pathsep.join([directory, *parts])


def activated(base: Mapping[str, str], interp: Interpreter) -> dict[str, str]:
    """``base`` with the interpreter's environment active (a pure function)."""
    env = dict(base)
    env["PATH"] = prepend_path(env.get("PATH"), interp.bindir)
    env.pop("PYTHONHOME", None)  # would point this interpreter's children elsewhere
    env.update(interp.activation())
    return env


def _activation_script(interp: Interpreter) -> str:
    """POSIX shell lines that make the kernel's environment active after the rc files."""
    lines = [
        "# codex-exec: the kernel's environment, after the user's start-up files",
        f"PATH={shlex.quote(interp.bindir)}:\"$PATH\"; export PATH",
    ]
    for key, value in interp.activation().items():
        lines.append(f"{key}={shlex.quote(value)}; export {key}")
    return "\n".join(lines) + "\n"


def _bash_rc(interp: Interpreter) -> str:
    # bash reads no --rcfile as a login shell, so the wrapper is read by an interactive
    # non-login shell and does what a login shell reads (bash(1), INVOCATION).
    return (
        "# codex-exec: what `bash -l` reads, then the kernel's environment\n"
        "if [ -f /etc/profile ]; then . /etc/profile; fi\n"
        "if [ -f ~/.bash_profile ]; then . ~/.bash_profile\n"
        "elif [ -f ~/.bash_login ]; then . ~/.bash_login\n"
        "elif [ -f ~/.profile ]; then . ~/.profile; fi\n"
        + _activation_script(interp)
    )


def _zsh_file(name: str, interp: Interpreter, last: bool) -> str:
    # zsh reads $ZDOTDIR/{.zshenv,.zprofile,.zshrc,.zlogin}: each wrapper sources the
    # user's file with the user's ZDOTDIR in place; the last one restores it for good.
    user = f'"${{{_USER_ZDOTDIR}:-$HOME}}"'
    text = (
        f"_codex_wrap=$ZDOTDIR; ZDOTDIR={user}\n"
        f'if [[ -f "$ZDOTDIR/{name}" ]]; then source "$ZDOTDIR/{name}"; fi\n'
    )
    if last:
        text += (
            f"if [[ -z ${{{_USER_ZDOTDIR}+x}} ]]; then unset ZDOTDIR; fi\n"
            f"unset {_USER_ZDOTDIR} _codex_wrap\n" + _activation_script(interp)
        )
    else:
        text += "ZDOTDIR=$_codex_wrap; unset _codex_wrap\n"
    return text


@dataclass
class ShellWrappers:
    """The generated start-up files, in a private directory made by this process."""

    interp: Interpreter
    directory: str | None = None
    _made: set[str] = field(default_factory=set)

    def _dir(self) -> str:
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="codex-exec-shell-")  # mode 0700
        return self.directory

    def _write(self, relative: str, text: str) -> str:
        path = os.path.join(self._dir(), relative)
        if relative not in self._made:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            self._made.add(relative)
        return path

    def bash_rcfile(self) -> str:
        return self._write("bash/rc", _bash_rc(self.interp))

    def zdotdir(self) -> str:
        names = (".zshenv", ".zprofile", ".zshrc", ".zlogin")
        for name in names:
            self._write(f"zsh/{name}", _zsh_file(name, self.interp, last=name == ".zlogin"))
        return os.path.join(self._dir(), "zsh")

    def remove(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._made.clear()


_LOGIN_FLAGS = {"-l", "--login"}


def login_shell_kind(argv: list[str]) -> str | None:
    """``"bash"``/``"zsh"`` when ``argv`` is a plain login shell (``SHELL -l [-i]``)."""
    if len(argv) < 2 or not set(argv[1:]) & _LOGIN_FLAGS:
        return None
    if not set(argv[1:]) <= _LOGIN_FLAGS | {"-i"}:
        return None  # a command or other options: leave it exactly as asked
    name = os.path.basename(argv[0])
    return name if name in ("bash", "zsh") else None


class KernelEnvironment(Configurable):
    """The spawn hook of a kernel's table: environment, directory, login shells."""

    activate = Bool(
        True,
        config=True,
        help="Start processes with the kernel's environment active: the directory of "
        "the kernel's python first on PATH, VIRTUAL_ENV or CONDA_PREFIX/CONDA_DEFAULT_ENV "
        "set when the kernel runs in one.",
    )
    follow_cwd = Bool(
        True,
        config=True,
        help="Start processes without a cwd in the kernel's current directory at the time "
        "they start (follows %cd and os.chdir); False: the kernel's launch directory.",
    )
    wrap_login_shells = Bool(
        True,
        config=True,
        help="Run a login bash or zsh (the Kernel Terminal's shell) through a generated "
        "start-up file that reads the user's usual files and then activates the kernel's "
        "environment (which /etc/profile would otherwise reset).",
    )

    def __init__(self, interp: Interpreter | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.interp = interp or Interpreter.current()
        self.launch_cwd = os.getcwd()
        self.wrappers = ShellWrappers(self.interp)

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        return activated(base, self.interp) if self.activate else dict(base)

    def cwd(self) -> str:
        return os.getcwd() if self.follow_cwd else self.launch_cwd

    def command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The argv and environment to actually run for ``argv``."""
        kind = login_shell_kind(argv) if self.activate and self.wrap_login_shells else None
        if kind == "bash":
            return [argv[0], "--rcfile", self.wrappers.bash_rcfile(), "-i"], env
        if kind == "zsh":
            env = dict(env)
            if "ZDOTDIR" in env:
                env[_USER_ZDOTDIR] = env["ZDOTDIR"]
            env["ZDOTDIR"] = self.wrappers.zdotdir()
            return list(argv), env
        return argv, env

    def close(self) -> None:
        self.wrappers.remove()
