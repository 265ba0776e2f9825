"""Rotations of 3-vectors as nanoBragg composes them, written for torch tensors.

``rotate_xyz`` applies rotations about the lab x, then y, then z axis (nanoBragg's ``rotate``);
``rotate_axis`` is Rodrigues' rotation about a unit axis (nanoBragg's ``rotate_axis``). Both broadcast
over leading dimensions of ``v`` and accept angles as Python floats or tensors, so gradients flow to
the angles.
"""

from __future__ import annotations

import math

import torch

def _cos_sin(angle, like: torch.Tensor):
    if isinstance(angle, torch.Tensor):
        return torch.cos(angle), torch.sin(angle)
    return math.cos(angle), math.sin(angle)


def rotate_x(v: torch.Tensor, phi) -> torch.Tensor:
    c, s = _cos_sin(phi, v)
    x, y, z = v.unbind(-1)
    return torch.stack((x, y * c - z * s, y * s + z * c), dim=-1)


def rotate_y(v: torch.Tensor, phi) -> torch.Tensor:
    c, s = _cos_sin(phi, v)
    x, y, z = v.unbind(-1)
    return torch.stack((x * c + z * s, y, -x * s + z * c), dim=-1)


def rotate_z(v: torch.Tensor, phi) -> torch.Tensor:
    c, s = _cos_sin(phi, v)
    x, y, z = v.unbind(-1)
    return torch.stack((x * c - y * s, x * s + y * c, z), dim=-1)


def _is_zero(angle) -> bool:
    return (not isinstance(angle, torch.Tensor)) and angle == 0


def rotate_xyz(v: torch.Tensor, rx, ry, rz) -> torch.Tensor:
    """Rotate about x, then y, then z (angles in radians); a zero float angle is skipped as in C."""
    if not _is_zero(rx):
        v = rotate_x(v, rx)
    if not _is_zero(ry):
        v = rotate_y(v, ry)
    if not _is_zero(rz):
        v = rotate_z(v, rz)
    return v


def rotate_axis(v: torch.Tensor, axis: torch.Tensor, phi) -> torch.Tensor:
    """Rodrigues rotation of ``v`` about the unit vector ``axis`` by ``phi`` radians."""
    c, s = _cos_sin(phi, v)
    if isinstance(phi, torch.Tensor) and phi.dim() > 0:
        c = c.unsqueeze(-1)
        s = s.unsqueeze(-1)
    dot = (axis * v).sum(-1, keepdim=True) * (1.0 - c)
    return axis * dot + v * c + torch.linalg.cross(axis.expand_as(v), v, dim=-1) * s


def axis_rotation_matrix(axis: torch.Tensor, phi) -> torch.Tensor:
    """The 3x3 matrix R with ``R @ v == rotate_axis(v, axis, phi)``; batched over a 1-D ``phi``."""
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    if isinstance(phi, torch.Tensor) and phi.dim() == 1:
        cols = rotate_axis(eye.unsqueeze(0).expand(phi.shape[0], 3, 3),
                           axis, phi.unsqueeze(-1))
        return cols.transpose(-1, -2)
    return rotate_axis(eye, axis, phi).transpose(-1, -2)

