"""A series: N images of consecutive φ ranges, one submission.

Its record (the parent) has no queue entry and no runner: its children are render jobs holding a
few images each (``image_numbers``), and ROLLUP moves the parent as they move (jobs.records).
"""

from __future__ import annotations

DESCRIPTION = "a rotation series: child render jobs hold its images, the parent rolls them up"


def price(per_image: int, *, images: int = 1, pixels: int = 0, detector_pixels: int = 0) -> int:
    """Every image costs what its first one does (only its φ range and noise seed differ)."""
    return per_image * images


__all__ = ["DESCRIPTION", "price"]
