#!/usr/bin/env bash
# The newcomer's path, for real: clone into a new folder, `make run` (creates .venv, installs, starts
# Redis + API + worker), submit the cubic case with the client, wait, fetch, check the golden bar,
# Ctrl-C, check that no process is left; then a second `make run` on the installed clone.
# Usage: scripts/fresh-clone-check.sh [PORT]   (default 8000; prints timings as it goes)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${1:-8000}"
DEST="$(mktemp -d /tmp/fresh-XXXXXX)"
URL="http://127.0.0.1:$PORT"
export BRAGG_URL="$URL"
git clone -q "$SRC" "$DEST/bragg-service"
cd "$DEST/bragg-service"
echo "clone: $PWD (commit $(git rev-parse --short HEAD))"

start() {  # make run in its own process group, as a terminal runs it in the foreground
  setsid make run PORT="$PORT" >"$1" 2>&1 &
  PGID=$!
  local t0=$SECONDS code=000
  for _ in $(seq 1 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz" || true)
    [ "$code" = 200 ] && break
    kill -0 "$PGID" 2>/dev/null || { echo "make run exited:"; tail -30 "$1"; exit 1; }
    sleep 0.2
  done
  [ "$code" = 200 ] || { echo "no /readyz 200"; tail -30 "$1"; exit 1; }
  echo "$2: /readyz 200 after $((SECONDS - t0)) s"
}

stop() {  # Ctrl-C: SIGINT to the foreground process group (make and bragg up)
  local t0=$SECONDS
  kill -INT -- "-$PGID"
  for _ in $(seq 1 300); do kill -0 "$PGID" 2>/dev/null || break; sleep 0.1; done
  sleep 0.5
  local left
  left=$(pgrep -af "$DEST|redis-server.*$DEST" | grep -v pgrep || true)
  echo "stopped after $((SECONDS - t0)) s; processes left: ${left:-none}"
  [ -z "$left" ]
}

SECONDS=0
start run1.log "first make run (fresh clone, no .venv)"
B=.venv/bin/bragg
ID=$($B submit -- -cell 100 100 100 90 90 90 -default_F 100 -lambda 6.2 -N 5 -distance 100 -detpixels 256)
echo "submitted: $ID"
$B wait "$ID"
$B fetch "$ID" --dir "out/$ID"
.venv/bin/python - "out/$ID/floatimage.bin" <<'PY'
import sys
import numpy as np
from tests.golden import load_case, meets_bar
case = load_case("cubic_default_F")
ok, m = meets_bar(np.fromfile(sys.argv[1], dtype="<f4").reshape(case.shape), case.reference())
print(f"golden bar of cubic_default_F: {'met' if ok else 'NOT MET'}: {m}")
sys.exit(0 if ok else 1)
PY
stop
ls data/redis
start run2.log "second make run (installed)"
stop
echo "all good; logs in $PWD/run1.log and run2.log"
