"""sim_core: a nanoBragg-faithful X-ray diffraction simulator in PyTorch (see docs/sim_core.md)."""

import os as _os

# The render loop runs thousands of short parallel regions. With OpenMP's default active waiting,
# a thread whose partner is descheduled (a busy machine, a worker beside an API process) spins away
# whole time slices: renders were measured 10-20x slower that way. Sleeping waits cost microseconds.
# Must be set before torch loads its OpenMP runtime; an explicit setting of the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
