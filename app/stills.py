"""What a stills dataset (``scan.random_orientations``) asks of a submission beyond a series'.

Its images differ in their drawn crystals and beams, so it is priced by its costliest draws
(:func:`sim_core.stills.costliest_config`), not by its first image; a draw the simulator would
refuse (a factor of 0 or less, a wavelength below 0.001 A) is a 422 now rather than a failed image
later. Its experiment list points at an image file DIALS reads, so it needs one; its predicted
reflections are always among its outputs.
"""

from __future__ import annotations

from typing import Optional

from sim_core.config import SimulationConfig
from sim_core.errors import ConfigError
from sim_core.output_formats import SERVICE_OUTPUTS
from sim_core.stills import EXPT_IMAGE_KINDS, costliest_config

from app.errors import invalid_field
from app.limits import config_error


def priced_image(cfg: SimulationConfig, form: str, names: dict[str, str],
                 argv: Optional[list[str]]) -> SimulationConfig:
    """The config a stills dataset is priced by: every image's evaluations are at most its."""
    try:
        return costliest_config(cfg)
    except ConfigError as exc:
        raise config_error(exc, form, names, argv) from None


def check_outputs(outputs: list[str]) -> None:
    """A stills dataset's ``experiments.expt`` names each image's SMV, noise or CBF file."""
    if not any(k in outputs for k in EXPT_IMAGE_KINDS):
        raise invalid_field("outputs", "a stills dataset (random_orientations) writes an "
                                       "experiment list that points at an image DIALS reads: "
                                       f"ask for one of {', '.join(EXPT_IMAGE_KINDS)}")


def with_truth_outputs(outputs: list[str]) -> list[str]:
    """A still's outputs: its predicted reflections always among them (the job's ``outputs`` say
    what it writes)."""
    return [k for k in SERVICE_OUTPUTS if k in outputs or k == "reflections"]


__all__ = ["priced_image", "check_outputs", "with_truth_outputs"]
