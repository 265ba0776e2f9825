"""The summary of a PDB or mmCIF model, read as a stream (torch-free, memory bounded by a line).

An upload's summary needs a model's cell, space group and atom counts; reading the file whole with
gemmi takes several times its size (a 237 MB PDB took the API to 985 MB). :func:`scan_model` reads
it a line at a time and makes the checks :func:`sim_core.io.structure.read_model` makes, with the
same messages: a truncated atom record, an atom's number columns, no atoms, no unit cell, a missing
or unknown space group. The atom count is the first model's, with its non-crystallographic copies
(``MTRIX`` / ``_struct_ncs_oper`` not marked as given), as gemmi expands them.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, Union

from ..errors import InputFileError

PathLike = Union[str, "os.PathLike[str]"]

_PDB_NUMBERS = ((30, 38, "x"), (38, 46, "y"), (46, 54, "z"), (54, 60, "occupancy"),
                (60, 66, "B-factor"))
_CELL_COLUMNS = ((6, 15), (15, 24), (24, 33), (33, 40), (40, 47), (47, 54))
_CIF_CELL = ("_cell.length_a", "_cell.length_b", "_cell.length_c", "_cell.angle_alpha",
             "_cell.angle_beta", "_cell.angle_gamma")
_CIF_SPACE_GROUP = ("_symmetry.space_group_name_h-m", "_space_group.name_h-m_alt")
#: a CIF token: a quoted string (a quote ends only before white space) or a bare word
_CIF_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'(?=\s|$)|"(?:[^"]|"(?=\S))*"(?=\s|$)|\S+""")


def check_atom_numbers(name: str, number: int, line: str) -> None:
    """gemmi reads unparsable coordinates as 0: the number columns of an ATOM/HETATM record."""
    for start, end, what in _PDB_NUMBERS:
        part = line[start:end].strip()
        if not part and what in ("occupancy", "B-factor"):
            continue
        try:
            float(part)
        except ValueError:
            got = f"'{part}'" if part else "nothing (the line is cut short)"
            raise InputFileError(f"{name} line {number}: {what} in columns {start + 1}-{end} "
                                 f"is {got}, not a number", path=name, line=number) from None


def check_truncated(name: str, number: int, line: str) -> None:
    """A file that stops inside an atom record (no newline after a record shorter than its
    B-factor column) is truncated."""
    last = line.rstrip("\r")
    if last.startswith(("ATOM  ", "HETATM")) and len(last) < 66:
        raise InputFileError(f"{name} line {number}: the file ends inside this atom record "
                             f"({len(last)} of at least 66 columns): truncated?", path=name,
                             line=number)


def _lines(path: PathLike) -> Iterator[tuple[int, str, bool]]:
    """(line number, text without its newline, whether a newline ended it), a line at a time."""
    name = os.fspath(path)
    try:
        fh = open(path, "rb")
    except FileNotFoundError as exc:
        raise InputFileError(f"{name}: model file not found", path=name) from exc
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read model file ({exc.strerror or exc})",
                             path=name) from exc
    with fh:
        for number, raw in enumerate(fh, start=1):
            ended = raw.endswith(b"\n")
            yield number, raw[:-1].decode("latin-1") if ended else raw.decode("latin-1"), ended


def _space_group(name: str, hm: str, cell, line: int | None, where: str):
    import gemmi

    if not hm.strip():
        raise InputFileError(f"{name}: no space group ({where} empty)", path=name, line=line)
    sg = gemmi.find_spacegroup_by_name(hm.strip(), cell[3], cell[5])
    if sg is None:
        raise InputFileError(f"{name}" + (f" line {line}" if line else "")
                             + f": unknown space group '{hm.strip()}'", path=name, line=line)
    return sg.hm


def _is_identity(rows: dict) -> bool:
    want = ([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0])
    return all(rows.get(i) is not None and all(abs(a - b) < 1e-4 for a, b in zip(rows[i], w))
               for i, w in enumerate(want, start=1))


def _scan_pdb(name: str, lines) -> dict:
    cell, cryst_line, hm = None, None, ""
    atoms = aniso = 0
    first_model = True
    ncs: dict[str, dict] = {}
    for number, line, ended in lines:
        if not ended:
            check_truncated(name, number, line)
        record = line[:6]
        if record in ("ATOM  ", "HETATM"):
            check_atom_numbers(name, number, line)
            atoms += first_model
        elif record == "ANISOU":
            if first_model and any(line[c:c + 7].strip() not in ("", "0")
                                   for c in range(28, 70, 7)):
                aniso += 1
        elif record == "CRYST1":
            cryst_line = number
            try:
                cell = tuple(float(line[a:b]) for a, b in _CELL_COLUMNS)
            except ValueError:
                cell = None
            hm = line[55:66]
        elif record == "ENDMDL":
            first_model = False
        elif record[:5] == "MTRIX" and record[5:6] in ("1", "2", "3"):
            op = ncs.setdefault(line[7:10].strip(), {"given": False, "rows": {}})
            try:
                op["rows"][int(record[5])] = [float(line[a:b]) for a, b in
                                              ((10, 20), (20, 30), (30, 40), (45, 55))]
            except ValueError:
                op["rows"][int(record[5])] = None
            op["given"] = op["given"] or line[59:60] == "1"
    if atoms == 0:
        raise InputFileError(f"{name}: no atoms (ATOM or HETATM records with coordinates)",
                             path=name)
    if cell is None or cell[:3] == (1.0, 1.0, 1.0):
        raise InputFileError(f"{name}: no unit cell (no CRYST1 record); the cell and the space "
                             "group are needed to compute structure factors", path=name,
                             line=cryst_line)
    sg = _space_group(name, hm, cell, cryst_line, "CRYST1 columns 56-66")
    copies = sum(1 for op in ncs.values() if not op["given"] and not _is_identity(op["rows"]))
    return {"format": "pdb", "cell": list(cell), "space_group": sg, "atoms": atoms * (1 + copies),
            "anisotropic_atoms": aniso * (1 + copies)}


def _cif_value(token: str) -> str | None:
    if token[:1] in ("'", '"'):
        return token[1:-1]
    return None if token in ("?", ".") else token


def _scan_mmcif(name: str, lines) -> dict:
    """The first data block's cell, space group and loops (_atom_site, _atom_site_anisotrop,
    _struct_ncs_oper), token by token."""
    items: dict[str, tuple[str | None, int]] = {}
    counts = {"atoms": 0, "aniso": 0, "copies": 0}
    state = {"tags": None, "values": [], "in_values": False, "start": 0, "pending": None,
             "first_model": None, "blocks": 0}
    column: dict[str, int] = {}

    def end_loop(number: int) -> None:
        tags, values = state["tags"], state["values"]
        if tags and values:
            raise InputFileError(f"{name} line {number}: the loop of {state['first_tag']} (line "
                                 f"{state['start']}) ends inside a row: {len(values)} of "
                                 f"{len(tags)} values", path=name, line=number)
        state.update(tags=None, values=[], in_values=False)

    def row(tags: list[str], vals: list) -> None:
        category = tags[0].split(".")[0]
        if category == "_atom_site":
            i = column.get("_atom_site.pdbx_pdb_model_num")
            model = vals[i] if i is not None else None
            if state["first_model"] is None:
                state["first_model"] = model
            counts["atoms"] += model == state["first_model"]
        elif category == "_atom_site_anisotrop":
            counts["aniso"] += 1
        elif category == "_struct_ncs_oper":
            i = column.get("_struct_ncs_oper.code")
            counts["copies"] += i is None or (_cif_value(vals[i]) or "").lower() != "given"
        else:
            for t, v in zip(tags, vals):
                if t in _CIF_CELL or t in _CIF_SPACE_GROUP:
                    items.setdefault(t, (_cif_value(v), state["start"]))

    def feed(token: str, number: int) -> bool:
        """Take one token; False once the first data block has ended."""
        low = token.lower()
        is_tag = token.startswith("_")
        keyword = low == "loop_" or low.startswith(("data_", "save_", "global_", "stop_"))
        if state["tags"] is not None and (is_tag or keyword):
            if state["in_values"] or keyword:
                end_loop(number)
            else:
                column[low] = len(state["tags"])
                state["tags"].append(low)
                state["first_tag"] = state.get("first_tag") or token
                return True
        if low.startswith("data_"):
            state["blocks"] += 1
            return state["blocks"] == 1  # gemmi reads the first block
        if low == "loop_":
            state.update(tags=[], values=[], in_values=False, start=number, first_tag=None)
            column.clear()
        elif is_tag:
            state["pending"] = low
        elif state["pending"] is not None:
            items.setdefault(state["pending"], (_cif_value(token), number))
            state["pending"] = None
        elif state["tags"]:
            state["in_values"] = True
            state["values"].append(token)
            if len(state["values"]) == len(state["tags"]):
                row(state["tags"], state["values"])
                state["values"] = []
        return True

    number = 0
    in_text = False
    for number, line, _ in lines:
        if in_text:  # a ;-delimited text field is one value
            if not line.startswith(";"):
                continue
            in_text = False
            tokens = _CIF_TOKEN.findall(line[1:])
            if not feed(";text;", number):
                break
        elif line.startswith(";"):
            in_text = True
            continue
        else:
            tokens = _CIF_TOKEN.findall(line)
        stop = False
        for token in tokens:
            if token.startswith("#"):
                break
            if not feed(token, number):
                stop = True
                break
        if stop:
            break
    end_loop(number)
    return _cif_summary(name, items, counts["atoms"], counts["aniso"], counts["copies"])


def _cif_summary(name: str, items: dict, atoms: int, aniso: int, copies: int) -> dict:
    if atoms == 0:
        raise InputFileError(f"{name}: no atoms (_atom_site loop with coordinates)", path=name)
    try:
        cell = tuple(float(items[t][0]) for t in _CIF_CELL)
    except (KeyError, TypeError, ValueError):
        line = min((items[t][1] for t in _CIF_CELL if t in items), default=None)
        raise InputFileError(f"{name}: no unit cell (no _cell.length_a/b/c items); the cell and "
                             "the space group are needed to compute structure factors",
                             path=name, line=line) from None
    hm, line = next((items[t] for t in _CIF_SPACE_GROUP if t in items), (None, None))
    sg = _space_group(name, hm or "", cell, line, "_symmetry.space_group_name_H-M")
    return {"format": "mmcif", "cell": list(cell), "space_group": sg,
            "atoms": atoms * (1 + copies), "anisotropic_atoms": aniso * (1 + copies)}


def scan_model(path: PathLike) -> dict:
    """The summary of a PDB or mmCIF model (format recognised by content), read a line at a time.

    Raises:
        InputFileError: as :func:`sim_core.io.structure.read_model`, naming the file and the line.
    """
    name = os.fspath(path)
    lines = _lines(path)
    head = []
    mmcif = False
    for item in lines:
        head.append(item)
        s = item[1].strip()
        if s and not s.startswith("#"):
            mmcif = s.lower().startswith("data_")
            break

    def again():
        yield from head
        yield from lines

    return _scan_mmcif(name, again()) if mmcif else _scan_pdb(name, again())


__all__ = ["scan_model", "check_atom_numbers", "check_truncated"]
