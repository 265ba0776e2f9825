"""Which device a render runs on: the one rule for "auto", shared by the simulator, the parity tool
and the workers."""

from __future__ import annotations

from .errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str = "auto") -> str:
    """``auto`` is CUDA where a CUDA device is available, else the CPU; ``cuda`` without one is a
    :class:`DeviceError`."""
    import torch

    if requested not in DEVICES:
        raise DeviceError(f"unknown device {requested!r} (auto, cpu or cuda)")
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if cuda else "cpu"
    if requested == "cuda" and not cuda:
        raise DeviceError("device 'cuda' was requested but no CUDA device is available here")
    return requested


__all__ = ["resolve_device", "DEVICES"]
