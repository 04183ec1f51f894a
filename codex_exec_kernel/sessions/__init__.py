"""Background sessions: processes that outlive the kernel, like tmux/dtach for notebooks.

See ``docs/sessions.md``. Entry points: :class:`.api.SessionManager` (Python),
:mod:`.cli` (``codex-exec session ...``), :mod:`.methods` (``session/*`` protocol).
"""
