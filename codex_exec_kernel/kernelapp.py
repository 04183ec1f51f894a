"""The kernel application: ipykernel's, with an IOPub socket that never drops messages."""

from __future__ import annotations

from typing import Any

import zmq
from ipykernel.kernelapp import IPKernelApp
from traitlets import Int, Type, default

from .kernel import CodexExecKernel, install_sigterm_handler


class CodexExecKernelApp(IPKernelApp):
    """``python -m codex_exec_kernel.launcher -f CONNECTION_FILE``."""

    name = "codex-exec-kernel"
    kernel_class = Type(CodexExecKernel, klass="ipykernel.kernelbase.Kernel", config=True)
    iopub_sndhwm = Int(
        32,
        config=True,
        help="Messages IOPub queues for one subscriber before sending waits for it.",
    )

    def _bind_socket(self, s: Any, port: Any) -> Any:
        # IOPub is an XPUB with libzmq's default high-water mark of 1000 messages: a
        # client that falls behind silently loses everything past it (our output, its
        # exit event, even `status: idle`). NODROP keeps every message: at the (small,
        # finite) high-water mark of the slowest subscriber the IOPub thread's send
        # waits instead, and the IOPub gate (iopubgate.py) pauses our processes while
        # it waits, so a stalled client bounds the kernel's memory instead of growing it.
        if s.type == zmq.XPUB:
            s.sndhwm = self.iopub_sndhwm
            s.setsockopt(zmq.XPUB_NODROP, 1)
        return super()._bind_socket(s, port)

    @default("config_files")
    def _config_files_default(self) -> list[str]:
        # IPython derives the file name from the app's name (codex_exec_kernel_config.py);
        # a user's ipython_kernel_config.py must apply as in `python3`, so it comes
        # first and ours may add to it.
        return [IPKernelApp.name.replace("-", "_") + "_config.py", self.config_file_name]

    def init_kernel(self) -> None:
        super().init_kernel()
        install_sigterm_handler(self.kernel)


def main() -> None:
    CodexExecKernelApp.launch_instance()
