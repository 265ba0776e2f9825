"""The golden cases of the C nanoBragg (tests/data/golden) and the agreement bars of their README."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "data" / "golden"


@dataclass
class Case:
    name: str
    folder: Path
    args: list[str]
    meta: dict

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.meta["shape_slow_fast"])

    @property
    def our_args(self) -> list[str]:
        return self.args + list(self.meta.get("our_extra_args", []))

    def reference(self) -> np.ndarray:
        return np.fromfile(self.folder / "float.bin", dtype="<f4").reshape(self.shape)

    @property
    def trace_pixel(self) -> tuple[int, int]:
        return tuple(self.meta["trace_pixel_slow_fast"])

    def copy_to(self, dest: Path) -> Path:
        """A writable copy of the case folder (the CLI writes its files into the current folder)."""
        shutil.copytree(self.folder, dest, dirs_exist_ok=True)
        return dest


def case_names() -> list[str]:
    return sorted(p.name for p in GOLDEN.iterdir() if (p / "args.txt").is_file())


def load_case(name: str) -> Case:
    folder = GOLDEN / name
    return Case(name=name, folder=folder, args=(folder / "args.txt").read_text().split(),
                meta=json.loads((folder / "meta.json").read_text()))


def agreement(image: np.ndarray, ref: np.ndarray) -> dict:
    a = np.asarray(image, dtype=np.float64).ravel()
    b = np.asarray(ref, dtype=np.float64).ravel()
    return {
        "corr": float(np.corrcoef(a, b)[0, 1]),
        "max_diff": float(np.abs(a - b).max() / np.abs(b).max()),
        "total": float(abs(a.sum() - b.sum()) / abs(b.sum())),
    }


def meets_bar(image: np.ndarray, ref: np.ndarray, dtype: str = "float64") -> tuple[bool, dict]:
    """The README's bar: float64 corr >= 0.99999, max diff <= 1e-4 of max, total within 1e-4;
    float32 corr >= 0.9999 and total within 1e-3."""
    m = agreement(image, ref)
    if dtype == "float64":
        ok = m["corr"] >= 0.99999 and m["max_diff"] <= 1e-4 and m["total"] <= 1e-4
    else:
        ok = m["corr"] >= 0.9999 and m["total"] <= 1e-3
    return ok, m
