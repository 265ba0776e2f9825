"""The ``nanobragg`` console script: hands the command to a running ``nanobragg-server`` if there
is one (see :mod:`sim_core.server`), else renders in this process. Imports only the standard
library until it knows which, so that a served command starts in tens of milliseconds.
Set ``NANOBRAGG_SERVER=off`` to always render in-process.
"""

from __future__ import annotations

import json
import os
import sys


def _remote(conn, argv: list[str]) -> int:
    from .server import _send

    with conn:
        _send(conn, {"argv": argv, "cwd": os.getcwd()})
        reader = conn.makefile("r")
        try:
            for line in reader:
                msg = json.loads(line)
                if "exit" in msg:
                    return int(msg["exit"])
                stream = sys.stdout if msg.get("fd") == 1 else sys.stderr
                stream.write(msg.get("data", ""))
                stream.flush()
        except KeyboardInterrupt:
            print("nanobragg: interrupted", file=sys.stderr)
            return 130
    print("nanobragg: the server went away before finishing", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("NANOBRAGG_SERVER", "auto").lower() not in ("off", "0", "no"):
        from .server import connect
        conn = connect()
        if conn is not None:
            return _remote(conn, argv)
    from .cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
