"""Structure factors of the unit cell: the HKL grid with nearest-node and tricubic lookups.

Nearest-node lookup rounds h, k, l with ``ceil(x - 0.5)`` and returns ``default_F`` outside the grid.
Tricubic lookup is nanoBragg's: a 4x4x4 Lagrange polynomial through the nodes floor(x)-1 .. floor(x)+2
on each axis. It needs two nodes of margin on each side; the first point that lacks them makes the
C program print one warning and switch interpolation off for the rest of the run; that point itself
then gets the nearest node (the C program assigns ``default_F`` first, but overwrites it at once).
The engine reproduces that sequence; this module provides the pieces.

For the nearest-node lookup the grid is kept with a one-node border of ``default_F`` on every side:
clamping the rounded indices into the bordered grid then gives ``default_F`` off the grid without a
separate inside test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .io.hkl import HklGrid


@dataclass
class StructureFactorTable:
    F: torch.Tensor | None  # (h_range, k_range, l_range) or None without an HKL file
    h_min: int = 0
    k_min: int = 0
    l_min: int = 0
    h_max: int = -1
    k_max: int = -1
    l_max: int = -1
    default_F: float = 0.0
    count: int = 0

    def __post_init__(self):
        self.F_padded = None
        if self.F is not None:
            self.F_padded = torch.nn.functional.pad(self.F, (1, 1, 1, 1, 1, 1),
                                                    value=self.default_F).contiguous()

    @classmethod
    def from_grid(cls, grid: HklGrid | None, default_F: float, *, dtype=torch.float64,
                  device="cpu") -> "StructureFactorTable":
        if grid is None:
            return cls(F=None, default_F=default_F)
        F = torch.as_tensor(grid.F, dtype=dtype, device=device).contiguous()
        return cls(F=F, h_min=grid.h_min, k_min=grid.k_min, l_min=grid.l_min, h_max=grid.h_max,
                   k_max=grid.k_max, l_max=grid.l_max, default_F=default_F, count=grid.count)

    def to(self, dtype, device) -> "StructureFactorTable":
        F = None if self.F is None else self.F.to(dtype=dtype, device=device)
        return StructureFactorTable(F, self.h_min, self.k_min, self.l_min, self.h_max, self.k_max,
                                    self.l_max, self.default_F, self.count)

    @property
    def has_grid(self) -> bool:
        return self.F is not None and self.count > 0

    @property
    def constant(self) -> bool:
        """True when every lookup returns ``default_F`` (no HKL file)."""
        return not self.has_grid

    def padded_index(self, h0: torch.Tensor, k0: torch.Tensor, l0: torch.Tensor, *,
                     consume: bool = False) -> torch.Tensor:
        """Flat indices into the bordered grid of rounded indices (float tensors of integers).

        ``consume=True`` lets the computation overwrite ``h0``, ``k0`` and ``l0``.
        """
        Hp, Kp, Lp = self.F_padded.shape
        parts = []
        for x, lo, n in ((h0, self.h_min, Hp), (k0, self.k_min, Kp), (l0, self.l_min, Lp)):
            x = x.add_(1 - lo) if consume else x + (1 - lo)
            parts.append(x.clamp_(0, n - 1))
        ih, ik, il = parts
        exact = Hp * Kp * Lp < (1 << 24 if ih.dtype == torch.float32 else 1 << 53)
        if exact:
            return ih.mul_(Kp).add_(ik).mul_(Lp).add_(il).long()
        ih, ik, il = ih.long(), ik.long(), il.long()
        return (ih * Kp + ik) * Lp + il

    def nearest(self, h0: torch.Tensor, k0: torch.Tensor, l0: torch.Tensor, *,
                consume: bool = False) -> torch.Tensor:
        """F at the rounded indices (float tensors holding integers); default_F off the grid."""
        if not self.has_grid:
            return torch.full_like(h0, self.default_F)
        idx = self.padded_index(h0, k0, l0, consume=consume)
        return torch.take(self.F_padded, idx).to(h0.dtype)

    def interpolation_out_of_range(self, h, k, l) -> torch.Tensor:
        """nanoBragg's test for a point whose tricubic neighbourhood leaves the grid."""
        hr = self.h_max - self.h_min + 1
        kr = self.k_max - self.k_min + 1
        lr = self.l_max - self.l_min + 1
        return (((h - self.h_min + 3) > hr) | (h - 2 < self.h_min)
                | ((k - self.k_min + 3) > kr) | (k - 2 < self.k_min)
                | ((l - self.l_min + 3) > lr) | (l - 2 < self.l_min))

    def tricubic(self, h: torch.Tensor, k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        """Tricubic Lagrange interpolation; points off the grid give clamped nonsense, mask them."""
        hf, kf, lf = torch.floor(h), torch.floor(k), torch.floor(l)
        wh, wk, wl = _lagrange4(h - hf), _lagrange4(k - kf), _lagrange4(l - lf)
        hr, kr, lr = self.F.shape
        hi = (hf - 1 - self.h_min).long()
        ki = (kf - 1 - self.k_min).long()
        li = (lf - 1 - self.l_min).long()
        offs = torch.arange(4, device=h.device)
        l_idx = (li.unsqueeze(-1) + offs).clamp(0, lr - 1)
        out = torch.zeros_like(h)
        for i in range(4):
            h_idx = (hi + i).clamp(0, hr - 1)
            for j in range(4):
                k_idx = (ki + j).clamp(0, kr - 1)
                base = (h_idx * kr + k_idx) * lr
                vals = torch.take(self.F, base.unsqueeze(-1) + (l_idx - 0)).to(h.dtype)
                out = out + wh[i] * wk[j] * (vals * torch.stack(wl, -1)).sum(-1)
        return out


def _lagrange4(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Lagrange weights of the nodes -1, 0, 1, 2 at offset x in [0, 1)."""
    xm1, xm0, xp1, xp2 = x + 1.0, x, x - 1.0, x - 2.0
    return (-(xm0 * xp1 * xp2) / 6.0, (xm1 * xp1 * xp2) / 2.0, -(xm1 * xm0 * xp2) / 2.0,
            (xm1 * xm0 * xp1) / 6.0)
