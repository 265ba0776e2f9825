"""Runs one section of the GPU check in its own process: ``python -m bench.gpu_check.section
NAME CONTEXT.json``.

A section reports through :class:`Emitter`: one JSON line per finished item, appended and flushed
at once, so that a section stopped by its time box still leaves every figure it had measured. The
orchestrator reads the file back whatever the exit.
"""

from __future__ import annotations

import importlib
import json
import math
import signal
import sys
import time
import traceback
from pathlib import Path

#: section name -> module of this package with ``run(ctx, emit)``
SECTIONS = {"tests": "cuda_tests", "parity": "parity_check", "bench": "speed",
            "service": "service_check"}


def jsonable(x):
    """Floats that JSON can hold (inf and NaN as strings), recursively."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


class Emitter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.t0 = time.perf_counter()

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(jsonable(record)) + "\n")

    def item(self, **fields) -> None:
        """A measured item; ``ok`` True/False (judged against its bar) or None (not judged)."""
        fields.setdefault("ok", None)
        self._write({"type": "item", "t": round(time.perf_counter() - self.t0, 3), **fields})
        label = fields.get("name", "")
        print(f"  [{fields['ok'] if fields['ok'] is not None else '-'}] {label}", flush=True)

    def not_run(self, what: str, why: str) -> None:
        """Something this section could not do here, and why (the report lists every one)."""
        self._write({"type": "not_run", "what": what, "why": why})
        print(f"  not run: {what}: {why}", flush=True)

    def note(self, text: str) -> None:
        self._write({"type": "note", "text": text})
        print(f"  note: {text}", flush=True)

    def info(self, **fields) -> None:
        """Facts about the section's setting (versions, sizes), merged into its report."""
        self._write({"type": "info", **fields})


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name, ctx_path = argv[0], Path(argv[1])
    ctx = json.loads(ctx_path.read_text())
    emit = Emitter(Path(ctx["out"]))

    def stop(signum, _frame):  # the time box: unwind, so that cleanups (bragg up's stop) run
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    module = importlib.import_module(f"{__package__}.{SECTIONS[name]}")
    try:
        module.run(ctx, emit)
    except Exception as exc:  # the report says what broke; the exit status says that it did
        emit._write({"type": "error", "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()[-3000:]})
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
