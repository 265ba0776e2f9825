"""sim_core: a nanoBragg-faithful X-ray diffraction simulator in PyTorch (see docs/sim_core.md)."""

__version__ = "0.1.0"
