"""Test-session settings shared by every test folder."""

import os

# The suite runs renders, API servers, workers and Redis side by side on few cores. OpenMP's
# default spin-waiting then burns the time slices a descheduled partner thread needs: renders were
# measured 10-20x slower that way. Sleeping waits cost little here. (An idle machine, where the
# default spinning is fastest, is what the benchmarks measure; see docs/performance.md.) This must
# be set before torch loads its OpenMP runtime; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Workers and nanobragg-server compile their fused kernels at start (seconds to a minute of CPU);
# the tests start many of them, so they leave that off. tests/sim_core/test_kernels.py turns it on
# for itself.
os.environ.setdefault("BRAGG_COMPILE", "off")

# Every plain `nanobragg` command hands itself to the user's render server and starts one when there
# is none; tests run it in-process and start no server behind them. The tests of the server
# (tests/sim_core/test_server.py) turn it on for themselves, in their own folders, and stop what
# they start.
os.environ.setdefault("NANOBRAGG_SERVER", "off")
