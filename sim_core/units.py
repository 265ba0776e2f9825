"""Unit conversions exactly as the C program performs them (no torch: the parser uses these)."""

#: C's M_1_PI and nanoBragg's degrees-per-radian factor, built the same way (180 * M_1_PI)
M_1_PI = 0.318309886183790671538
RTD = 180.0 * M_1_PI


def deg2rad(x):
    """Degrees to radians as nanoBragg converts them (``x / RTD``); works on floats and tensors."""
    return x / RTD
