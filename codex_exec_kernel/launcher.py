"""Entry point of the kernelspec: ``python -m codex_exec_kernel.launcher -f FILE``."""

import sys

if __name__ == "__main__":
    # Remove the cwd from sys.path, as ipykernel_launcher does, so a notebook folder's
    # files cannot shadow modules the kernel imports.
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    from codex_exec_kernel.kernelapp import main

    main()
