"""`pip install ARGS` with compact progress, for the Makefile: one line per package collected,
downloaded or taken from the cache, a percentage on the line of a download in progress (on a
terminal), the packages installed and the time taken; "Requirement already satisfied" lines are
counted, not shown, and pip's warnings come at the end (the first three). On failure pip's whole
output is printed, so nothing needed to fix it is lost.

    .venv/bin/python scripts/pip_install.py -e ".[local]"

Standard library only: it runs in a new virtual environment before anything is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

#: pip's --progress-bar raw ("Progress <bytes> of <total>" lines) exists from pip 24.1
RAW_PROGRESS = (24, 1)


def pip_version() -> tuple[int, ...]:
    try:
        import pip
    except ImportError:
        return (0,)
    return tuple(int(x) for x in re.findall(r"\d+", pip.__version__)[:2])


class Display:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.tty = out.isatty()
        self.line = ""  # the download line a percentage is shown on
        self.shown = -1

    def say(self, text: str) -> None:
        self.end_line()
        self.out.write(f"  {text}\n")
        self.out.flush()

    def start_download(self, text: str) -> None:
        self.end_line()
        self.line, self.shown = f"  {text}", -1
        self.out.write(self.line + ("" if self.tty else "\n"))
        self.out.flush()

    def progress(self, done: int, total: int) -> None:
        if not (self.tty and self.line and total > 0):
            return
        pct = int(100 * done / total)
        if pct != self.shown:
            self.shown = pct
            self.out.write(f"\r{self.line} {pct:3d}%")
            self.out.flush()

    def end_line(self) -> None:
        if self.tty and self.line:
            self.out.write("\n")
        self.line = ""


def short(name: str) -> str:
    """A file name from pip's "Downloading" line: the URL's last part, without its query."""
    return name.rsplit("/", 1)[-1].split("#", 1)[0]


def main(args: list[str]) -> int:
    bar = "raw" if pip_version() >= RAW_PROGRESS else "off"
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install",
           "--progress-bar", bar, *args]
    t0 = time.monotonic()
    shown = Display()
    lines: list[str] = []
    satisfied = 0
    warnings: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        text = line.strip()
        if m := re.match(r"Progress (\d+) of (\d+)$", text):
            shown.progress(int(m[1]), int(m[2]))
            continue
        lines.append(line)
        if m := re.match(r"Collecting (\S+)", text):
            shown.say(f"collecting {m[1]}")
        elif m := re.match(r"Downloading (\S+)(?: \((.+)\))?", text):
            shown.start_download(f"downloading {short(m[1])}" + (f" ({m[2]})" if m[2] else ""))
        elif m := re.match(r"Processing (\S+)", text):
            shown.say(f"collecting {short(m[1])}")
        elif m := re.match(r"Using cached (\S+)", text):
            shown.say(f"from the cache: {short(m[1])}")
        elif text.startswith("Requirement already satisfied"):
            satisfied += 1
        elif m := re.match(r"Obtaining (\S+)", text):
            shown.say(f"the project, editable, from {m[1]}")
        elif (m := re.match(r"Building (?:editable|wheel) for (\S+)", text)) \
                and "finished" not in text:
            shown.say(f"building {m[1]}")
        elif m := re.match(r"Installing collected packages: (.+)", text):
            n = len(m[1].split(", "))
            shown.say(f"installing {n} package{'s' if n > 1 else ''}: {m[1]}")
        elif text.startswith("ERROR"):
            shown.say(text)
        elif text.startswith("WARNING"):
            warnings.append(text)
    code = proc.wait()
    shown.end_line()
    took = time.monotonic() - t0
    if code != 0:
        sys.stdout.write(f"pip failed (exit {code}) after {took:.0f} s; its whole output:\n")
        sys.stdout.write("\n".join(lines) + "\n")
        return code
    done = [x for x in lines if x.startswith("Successfully installed")]
    count = len(done[0].split()) - 2 if done else 0
    already = f", {satisfied} already there" if satisfied else ""
    shown.say(f"{count} installed{already}, in {took:.0f} s")
    for w in warnings[:3]:
        shown.say(w)
    if len(warnings) > 3:
        shown.say(f"... and {len(warnings) - 3} more warnings of pip")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
