"""In-memory IPython history for notebooks that are executed, not edited.

nbclient (and so papermill, ``nbconvert --execute``, voilà) starts ``python3`` with
``--HistoryManager.hist_file=:memory:``, so an executed notebook leaves no copy of its
cells (secrets included) in ``history.sqlite``. It decides by the kernel's *name*
(jupyter_client's ``KernelManager.ipykernel``: python, python2, python3), so that
argument never reaches ``codex-exec``. What does reach every kernel is how those
executors talk: every ``execute_request`` they send has ``allow_stdin: false`` (nbclient
sets ``kc.allow_stdin = False``), while interactive frontends (JupyterLab, Notebook,
VS Code, ``jupyter console``, qtconsole, ``jupyter run``) allow stdin.

So the kernel decides at its first stored, non-silent execution: a client that cannot
answer ``input()`` is an executor, and the history goes to memory for the kernel's
lifetime, as for ``python3`` under nbclient. The file then holds one empty session row
(its start and end time), no cell. ``CodexExecKernel.executor_history_in_memory``
(default on) turns this off.
"""

from __future__ import annotations

from typing import Any


def switch_to_memory(history_manager: Any) -> bool:
    """Move an IPython ``HistoryManager`` from its file to an in-memory database.

    Nothing of the session has been stored yet when this runs (it runs before the
    first stored execution), so nothing is lost. Returns False if there was nothing to
    switch (history disabled or already in memory).
    """
    hm = history_manager
    if hm is None or not hm.enabled or str(hm.hist_file) == ":memory:":
        return False
    if hm.save_thread is not None:
        hm.save_thread.stop()  # flushes nothing: the caches are empty
        hm.save_thread = None
    hm.using_thread = False
    hm.end_session()  # close the empty session row of the file
    hm.db.close()
    hm.hist_file = ":memory:"
    hm.init_db()
    hm.new_session()
    return True
