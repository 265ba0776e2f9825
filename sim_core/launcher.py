"""The ``nanobragg`` console script: hands the command to the user's warm ``nanobragg-server``
(:mod:`sim_core.server`) when one is ready, else renders in this process, and starts a server in
the background when there is none, so that the next commands get the compiled kernels without
anyone starting anything. Imports only the standard library until it knows which, so that a
served command starts in tens of milliseconds.

``NANOBRAGG_SERVER=off`` always renders in-process and starts nothing; ``NANOBRAGG_SERVER=use``
uses a running server but never starts one. Output files, standard output and error and the exit
status are the same either way.

While the server compiles its kernels (10-80 s after it starts) a command renders in its own process
rather than waiting: a cold render costs the import (~1 s) and the eager engine, which for every
bench command is less than the compilation still ahead (docs/performance.md).
"""

from __future__ import annotations

import os
import sys

OFF = ("off", "0", "no", "false")


def in_process(argv: list[str]) -> int:
    """Render ``argv`` in this process: OpenMP's waiting bounded before torch loads, and the
    render's threads chosen from the cores that other processes left idle while it started."""
    from . import runtime

    runtime.openmp_environment()
    meter = runtime.CpuMeter()  # the import of torch, next, is the window it measures
    runtime.set_thread_policy(
        lambda eager=False: runtime.choose_threads(meter.others_busy(), eager))
    from .cli import main as cli_main
    return cli_main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setting = os.environ.get("NANOBRAGG_SERVER", "auto").lower()
    if setting not in OFF and argv and argv[0] not in ("-h", "-help", "--help"):
        from .server import hand_over
        code = hand_over(argv, start=setting != "use")
        if code is not None:
            return code
    return in_process(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
