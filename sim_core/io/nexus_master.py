"""The NXmx master file of a series rendered in parts, as an Eiger writes a master and data files.

The service renders a series in child jobs, each on whichever worker is free, so no one process
sees every image. Each child writes its images into one complete NXmx file of its own, its *data
file* (:func:`sim_core.output_formats.nexus_data_name`, ``image_data_00003.nxs``: the geometry, and
the frames with their φ). The series' master file is made from them when the dataset is
downloaded (:func:`series_master`, torch-free: the API runs it): the first data file's geometry,
beam, sensor and mask, ``/entry/data/data`` as an HDF5 virtual dataset whose frames are the data
files' frames in image order (named relative to the master, so the master opens them from the
folder it is unpacked into), and the goniometer's φ start and end of every frame. It holds no
pixels itself: a few kilobytes whatever the series' size.

Made on download rather than by the last child, it needs no step after the series ends and no
coordination between workers, and it is always consistent with the data files it is sent with.
"""

from __future__ import annotations

import io
import os
from typing import Sequence, Union

import numpy as np

from .nexus import DATA_PATH, PHI_AXIS

PathLike = Union[str, "os.PathLike[str]"]
#: the datasets with one value per frame that the master joins across the data files
PER_FRAME = (PHI_AXIS, PHI_AXIS + "_end")


def series_master(parts: Sequence[tuple[str, PathLike]]) -> bytes:
    """The bytes of the master file over ``parts``: (the data file's name beside the master, its
    local path), in image order. Raises ValueError when the parts' frames differ in shape or
    type."""
    import h5py
    import hdf5plugin  # noqa: F401 - registers the bitshuffle filter the data files use

    if not parts:
        raise ValueError("a master file needs at least one data file")
    # one data file open at a time, so memory does not grow with their count; then the first
    # again, for its geometry
    shapes, joined = [], {p: [] for p in PER_FRAME}
    for name, path in parts:
        with h5py.File(os.fspath(path), "r") as f:
            d = f[DATA_PATH]
            shapes.append((name, d.shape, d.dtype))
            for p in PER_FRAME:
                if p in f:
                    joined[p].append(np.atleast_1d(f[p][()]))
    _, shape0, dtype0 = shapes[0]
    for name, shape, dtype in shapes:
        if shape[1:] != shape0[1:] or dtype != dtype0:
            raise ValueError(f"{name}: frames of {shape[1:]} {dtype}, not the {shape0[1:]} "
                             f"{dtype0} of {parts[0][0]}")
    frames = sum(shape[0] for _, shape, _ in shapes)
    layout = h5py.VirtualLayout(shape=(frames,) + shape0[1:], dtype=dtype0)
    at = 0
    for name, shape, _ in shapes:
        layout[at:at + shape[0]] = h5py.VirtualSource(name, DATA_PATH, shape=shape)
        at += shape[0]
    joined = {p: np.concatenate(v) for p, v in joined.items() if len(v) == len(parts)}
    out = io.BytesIO()
    with h5py.File(os.fspath(parts[0][1]), "r") as first, h5py.File(out, "w") as master:
        _copy_attrs(first, master)
        data = master.create_virtual_dataset(DATA_PATH, layout, fillvalue=0)
        _copy_attrs(first[DATA_PATH], data)
        _copy_group(first, master, first[DATA_PATH], data, joined, done=[])
    return out.getvalue()


def _copy_attrs(src, dst) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def _copy_group(src, dst, data_src, data_dst, joined: dict, done: list) -> None:
    """Copy ``src``'s members into ``dst``: the frames become ``data_dst``, the per-frame
    datasets of ``joined`` their joined values, and an object linked twice (the beam, which the
    sample links too) stays one object linked twice."""
    import h5py

    for name in src:
        if not isinstance(src.get(name, getlink=True), h5py.HardLink):
            continue  # the writer makes none; a soft or external link would point elsewhere
        obj = src[name]
        same = next((path for seen, path in done if seen == obj), None)
        if obj == data_src:
            if name not in dst:
                dst[name] = data_dst
        elif same is not None:
            dst[name] = dst.file[same]
        elif obj.name in joined and isinstance(obj, h5py.Dataset):
            new = dst.create_dataset(name, data=joined[obj.name])
            _copy_attrs(obj, new)
            done.append((obj, new.name))
        elif isinstance(obj, h5py.Group):
            group = dst.require_group(name)
            _copy_attrs(obj, group)
            done.append((obj, group.name))
            _copy_group(obj, group, data_src, data_dst, joined, done)
        else:
            src.copy(obj, dst, name=name)
            done.append((obj, dst[name].name))


__all__ = ["series_master", "PER_FRAME"]
