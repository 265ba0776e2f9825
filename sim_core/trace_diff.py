"""``nanobragg-trace-diff``: compare two per-pixel traces line by line.

    nanobragg-trace-diff trace_c.log trace_py.log            # C trace against ours
    nanobragg-trace-diff --rtol 1e-9 --json a.log b.log      # machine-readable report

A trace file holds lines ``TRACE_C: <key> <values...>`` (the C program's ``-trace_pixel`` build) or
``TRACE_PY: <key> <values...>`` (``nanobragg -trace_pixel S F``), and per-phi lines
``TRACE_PY_PHI phi_tic=0 phi_deg=... h=...`` (or ``TRACE_C_PHI``). Every other line (the C program's
progress and summary output, ``TRACE_CONFIG`` headers, other prefixes) is ignored, except that a
``..._CONFIG: tracing pixel (spixel=S, fpixel=F)`` header tells which pixel the following lines
belong to. See ``docs/trace-format.md``.

Pairing. The prefix is normalised (``TRACE_C`` and ``TRACE_PY`` are the same *main* family, the
``_PHI`` variants the *phi* family), then the n-th line of a key in A is paired with the n-th line
of that key in B (its *occurrence*). A phi line is split into one record per field, keyed by its
``phi_tic`` and the field name (``PHI[phi_tic=2].F_latt``); the fields ``h``, ``k``, ``l`` form one
record ``PHI[phi_tic=2].hkl`` (three values, compared like the ``hkl_frac`` line).

Differences. For a pair of lines, ``abs`` is the largest |a_i - b_i| over the line's values and
``rel`` is ``abs`` divided by the line's largest magnitude (over both sides). A pair *exceeds* the tolerance
when ``abs > atol + rtol * magnitude`` (a NaN against a number, a different number of values or a
different non-numeric token always does). Per key the report gives the maxima over occurrences.

Exit status: 0 when every paired line is within tolerance and both sides have the same keys and
occurrence counts; 1 when a line exceeds the tolerance or a key or occurrence is present on one side
only (``--allow-missing`` reports those without failing); 2 on usage or file errors (including a
file without any trace line). A family that one side lacks entirely (C traces without per-phi lines, for
instance) is reported as not compared and does not fail the comparison.

Library use::

    from sim_core.trace_diff import parse_trace, compare
    report = compare(parse_trace(text_a), parse_trace(text_b), rtol=1e-6)
    report.ok, report.first_divergence, report.to_dict()
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAIN = "main"
PHI = "phi"

#: prefixes that carry data, and the family each belongs to
FAMILIES = {"TRACE_C": MAIN, "TRACE_PY": MAIN, "TRACE_C_PHI": PHI, "TRACE_PY_PHI": PHI}

_LINE = re.compile(r"^\s*(TRACE_[A-Z0-9_]+)(:?)(?:\s+(.*?))?\s*$")
_HKL = ("h", "k", "l")
_PIXEL = re.compile(r"spixel\s*=\s*(-?\d+)\s*,\s*fpixel\s*=\s*(-?\d+)")


@dataclass
class TraceRecord:
    """One comparable item of a trace: a main line, or one field of a phi line."""

    prefix: str  # as written: TRACE_C, TRACE_PY, TRACE_C_PHI, TRACE_PY_PHI
    family: str  # MAIN or PHI
    key: str  # normalised key: "hkl_frac", "PHI[phi_tic=0].F_latt"
    occurrence: int  # 0 for the first line of this key (per pixel), 1 for the next...
    values: list  # floats, or strings for tokens that are not numbers
    line: int  # 1-based line number in the text
    pixel: tuple[int, int] | None = None  # (slow, fast) from the last CONFIG header, if any

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "family": self.family, "key": self.key,
                "occurrence": self.occurrence, "values": [_jsonable(v) for v in self.values],
                "line": self.line, "pixel": list(self.pixel) if self.pixel else None}


def _value(token: str):
    try:
        return float(token)
    except ValueError:
        return token


def parse_trace(text: str) -> list[TraceRecord]:
    """The trace records of ``text``, in file order; lines that are not trace data are skipped."""
    records: list[TraceRecord] = []
    counts: dict[tuple, int] = {}
    pixel: tuple[int, int] | None = None

    def add(prefix, family, key, values, lineno):
        n = counts.get((pixel, key), 0)
        counts[(pixel, key)] = n + 1
        records.append(TraceRecord(prefix, family, key, n, values, lineno, pixel))

    for lineno, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            continue
        prefix, rest = m.group(1), m.group(3) or ""
        if prefix.endswith("_CONFIG"):
            p = _PIXEL.search(rest)
            if p:
                pixel = (int(p.group(1)), int(p.group(2)))
            continue
        family = FAMILIES.get(prefix)
        if family is None:
            continue
        tokens = rest.split()
        if family == MAIN:
            if not tokens:
                continue
            add(prefix, family, tokens[0], [_value(t) for t in tokens[1:]], lineno)
            continue
        fields = []
        for t in tokens:
            name, eq, val = t.partition("=")
            if eq:
                fields.append((name, val))
        tic = next((v for n, v in fields if n == "phi_tic"), None)
        head = f"PHI[phi_tic={tic}]" if tic is not None else "PHI"
        names = [n for n, _ in fields]
        vector = all(n in names for n in _HKL)
        for name, val in fields:
            if name == "phi_tic":
                continue
            if vector and name in _HKL:
                if name == _HKL[0]:  # h, k, l together, as the hkl_frac line
                    vals = dict(fields)
                    add(prefix, family, f"{head}.hkl", [_value(vals[n]) for n in _HKL], lineno)
                continue
            add(prefix, family, f"{head}.{name}", [_value(val)], lineno)
    return records


def pixels_of(records: list[TraceRecord]) -> list[tuple[int, int] | None]:
    """The distinct pixels that ``records`` belong to, in order of appearance."""
    out: list = []
    for r in records:
        if r.pixel not in out:
            out.append(r.pixel)
    return out


def select_pixel(records: list[TraceRecord], pixel: tuple[int, int]) -> list[TraceRecord]:
    return [r for r in records if r.pixel == tuple(pixel)]


# ---- comparison ---------------------------------------------------------------------------------

def _pair_diff(a: list, b: list) -> tuple[float, float, float, str | None]:
    """(abs, rel, magnitude, problem) of one pair of lines."""
    if len(a) != len(b):
        return math.inf, math.inf, math.nan, f"{len(a)} values against {len(b)}"
    worst = 0.0
    mag = 0.0
    for x, y in zip(a, b):
        if isinstance(x, str) or isinstance(y, str):
            if x != y:
                return math.inf, math.inf, math.nan, f"{x!r} against {y!r}"
            continue
        if math.isnan(x) or math.isnan(y):
            if not (math.isnan(x) and math.isnan(y)):
                return math.inf, math.inf, math.nan, f"{x!r} against {y!r}"
            continue
        if math.isinf(x) or math.isinf(y):
            if x != y:
                return math.inf, math.inf, math.nan, f"{x!r} against {y!r}"
            continue
        worst = max(worst, abs(x - y))
        mag = max(mag, abs(x), abs(y))
    rel = worst / mag if mag > 0 else (0.0 if worst == 0 else math.inf)
    return worst, rel, mag, None


@dataclass
class PairDiff:
    key: str
    family: str
    occurrence: int
    a: TraceRecord
    b: TraceRecord
    abs: float
    rel: float
    magnitude: float
    exceeds: bool
    problem: str | None = None  # value-count or token mismatch

    def to_dict(self) -> dict:
        return {"key": self.key, "family": self.family, "occurrence": self.occurrence,
                "line_a": self.a.line, "line_b": self.b.line,
                "values_a": [_jsonable(v) for v in self.a.values],
                "values_b": [_jsonable(v) for v in self.b.values],
                "abs": _jsonable(self.abs), "rel": _jsonable(self.rel),
                "exceeds": self.exceeds, "problem": self.problem}


@dataclass
class KeyDiff:
    """Per-key summary: maxima over the paired occurrences."""

    key: str
    family: str
    occurrences_a: int
    occurrences_b: int
    compared: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst_occurrence: int | None = None  # occurrence of max_rel
    exceeding: int = 0  # paired occurrences over the tolerance

    @property
    def exceeds(self) -> bool:
        return self.exceeding > 0

    @property
    def count_mismatch(self) -> bool:
        return self.occurrences_a != self.occurrences_b

    def to_dict(self) -> dict:
        return {"key": self.key, "family": self.family, "occurrences_a": self.occurrences_a,
                "occurrences_b": self.occurrences_b, "compared": self.compared,
                "max_abs": _jsonable(self.max_abs), "max_rel": _jsonable(self.max_rel),
                "worst_occurrence": self.worst_occurrence, "exceeding": self.exceeding,
                "exceeds": self.exceeds}


@dataclass
class DiffReport:
    rtol: float
    atol: float
    allow_missing: bool
    keys: list[KeyDiff]  # pipeline order: A's order, then keys of B only
    pairs: list[PairDiff]  # every paired line, in A's order
    only_in_a: list[KeyDiff]  # keys with no line at all in B (compared families only)
    only_in_b: list[KeyDiff]
    occurrence_mismatches: list[KeyDiff]  # keys on both sides with different counts
    first_divergence: dict | None
    skipped_families: dict[str, str]  # family -> why it was not compared
    records_a: int
    records_b: int
    pixels_a: list = field(default_factory=list)
    pixels_b: list = field(default_factory=list)
    name_a: str = "A"
    name_b: str = "B"

    @property
    def exceeding_keys(self) -> list[KeyDiff]:
        return [k for k in self.keys if k.exceeds]

    @property
    def structural_mismatch(self) -> bool:
        return bool(self.only_in_a or self.only_in_b or self.occurrence_mismatches)

    @property
    def ok(self) -> bool:
        return not self.exceeding_keys and (self.allow_missing or not self.structural_mismatch)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def max_abs(self) -> float:
        return max((k.max_abs for k in self.keys if k.compared), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((k.max_rel for k in self.keys if k.compared), default=0.0)

    @property
    def worst_key(self) -> KeyDiff | None:
        cands = [k for k in self.keys if k.compared]
        return max(cands, key=lambda k: k.max_rel) if cands else None

    def key(self, name: str) -> KeyDiff:
        for k in self.keys:
            if k.key == name:
                return k
        raise KeyError(name)

    def to_dict(self) -> dict:
        worst = self.worst_key
        return {
            "a": {"name": self.name_a, "records": self.records_a,
                  "pixels": [list(p) if p else None for p in self.pixels_a]},
            "b": {"name": self.name_b, "records": self.records_b,
                  "pixels": [list(p) if p else None for p in self.pixels_b]},
            "rtol": self.rtol, "atol": self.atol, "allow_missing": self.allow_missing,
            "ok": self.ok, "exit_code": self.exit_code,
            "compared_lines": len(self.pairs),
            "max_abs": _jsonable(self.max_abs), "max_rel": _jsonable(self.max_rel),
            "worst_key": worst.key if worst else None,
            "first_divergence": self.first_divergence,
            "exceeding_keys": [k.key for k in self.exceeding_keys],
            "only_in_a": [{"key": k.key, "occurrences": k.occurrences_a} for k in self.only_in_a],
            "only_in_b": [{"key": k.key, "occurrences": k.occurrences_b} for k in self.only_in_b],
            "occurrence_mismatches": [{"key": k.key, "a": k.occurrences_a, "b": k.occurrences_b}
                                      for k in self.occurrence_mismatches],
            "skipped_families": dict(self.skipped_families),
            "keys": [k.to_dict() for k in self.keys],
        }


def compare(a: list[TraceRecord], b: list[TraceRecord], rtol: float = 1e-6, atol: float = 0.0,
            *, allow_missing: bool = False, name_a: str = "A", name_b: str = "B") -> DiffReport:
    """Pair the records of two traces by (key, occurrence) and measure their differences.

    Records should be of one pixel each (see :func:`select_pixel`); the pixel itself is not part of
    the pairing, so that traces of different pixels can be compared on purpose.
    """
    if not (rtol >= 0 and atol >= 0):
        raise ValueError("rtol and atol must be >= 0")
    for side, recs in ((name_a, a), (name_b, b)):
        if len(pixels_of(recs)) > 1:
            raise ValueError(f"{side} holds traces of several pixels; select one with "
                             "select_pixel() first")
    fam_a = {r.family for r in a}
    fam_b = {r.family for r in b}
    n_a, n_b = len(a), len(b)
    skipped: dict[str, str] = {}
    for fam in sorted(fam_a ^ fam_b):
        side, other = (name_a, name_b) if fam in fam_a else (name_b, name_a)
        skipped[fam] = f"{other} has no {fam} lines ({side} has)"
    a = [r for r in a if r.family not in skipped]
    b = [r for r in b if r.family not in skipped]

    index_b = {(r.key, r.occurrence): r for r in b}
    keys: dict[str, KeyDiff] = {}
    for r in a:
        if r.key not in keys:
            keys[r.key] = KeyDiff(r.key, r.family, 0, 0)
        keys[r.key].occurrences_a += 1
    for r in b:
        if r.key not in keys:
            keys[r.key] = KeyDiff(r.key, r.family, 0, 0)
        keys[r.key].occurrences_b += 1

    pairs: list[PairDiff] = []
    first: dict | None = None
    for r in a:
        kd = keys[r.key]
        other = index_b.get((r.key, r.occurrence))
        if other is None:
            if first is None and not allow_missing:
                first = {"key": r.key, "occurrence": r.occurrence, "line_a": r.line,
                         "line_b": None, "reason": f"missing in {name_b}",
                         "values_a": [_jsonable(v) for v in r.values], "values_b": None,
                         "abs": None, "rel": None}
            continue
        d_abs, d_rel, mag, problem = _pair_diff(r.values, other.values)
        exceeds = problem is not None or not d_abs <= atol + rtol * mag
        pd = PairDiff(r.key, r.family, r.occurrence, r, other, d_abs, d_rel, mag, exceeds, problem)
        pairs.append(pd)
        kd.compared += 1
        if kd.worst_occurrence is None or d_rel > kd.max_rel:
            kd.worst_occurrence = r.occurrence
        kd.max_abs = max(kd.max_abs, d_abs)
        kd.max_rel = max(kd.max_rel, d_rel)
        if exceeds:
            kd.exceeding += 1
            if first is None:
                first = pd.to_dict()
                first["reason"] = problem or "exceeds tolerance"
    only_a = [k for k in keys.values() if k.occurrences_b == 0]
    only_b = [k for k in keys.values() if k.occurrences_a == 0]
    mism = [k for k in keys.values() if k.occurrences_a and k.occurrences_b and k.count_mismatch]
    if first is None and not allow_missing:
        index_a = {(r.key, r.occurrence) for r in a}
        for r in b:
            if (r.key, r.occurrence) not in index_a:
                first = {"key": r.key, "occurrence": r.occurrence, "line_a": None,
                         "line_b": r.line, "reason": f"missing in {name_a}", "values_a": None,
                         "values_b": [_jsonable(v) for v in r.values], "abs": None, "rel": None}
                break
    return DiffReport(rtol=rtol, atol=atol, allow_missing=allow_missing, keys=list(keys.values()),
                      pairs=pairs, only_in_a=only_a, only_in_b=only_b,
                      occurrence_mismatches=mism, first_divergence=first,
                      skipped_families=skipped, records_a=n_a, records_b=n_b,
                      pixels_a=pixels_of(a), pixels_b=pixels_of(b), name_a=name_a, name_b=name_b)


def compare_text(text_a: str, text_b: str, rtol: float = 1e-6, atol: float = 0.0,
                 **kw) -> DiffReport:
    """:func:`compare` of two trace texts (one pixel each)."""
    return compare(parse_trace(text_a), parse_trace(text_b), rtol, atol, **kw)


# ---- output -------------------------------------------------------------------------------------

def _jsonable(v):
    """Floats as JSON numbers, with non-finite ones as the strings "inf", "-inf", "nan"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def short_number(v) -> str:
    """A value as a report's table shows it: 3 significant digits, "-" for none."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return "0" if v == 0 else f"{v:.3g}"
    return str(v)


def _vals(values) -> str:
    return " ".join(v if isinstance(v, str) else "%.15g" % v for v in values)


def format_report(rep: DiffReport, *, all_keys: bool = True) -> str:
    out = []
    out.append(f"A: {rep.name_a} ({rep.records_a} records)")
    out.append(f"B: {rep.name_b} ({rep.records_b} records)")
    pa = [p for p in rep.pixels_a if p]
    pb = [p for p in rep.pixels_b if p]
    if pa and pb and pa != pb:
        out.append(f"note: A traces pixel {pa[0]}, B traces pixel {pb[0]}")
    for fam, why in rep.skipped_families.items():
        out.append(f"note: {fam} lines not compared: {why}")
    out.append(f"tolerance: |a-b| <= atol + rtol * max|value| per line, rtol={rep.rtol:g} "
               f"atol={rep.atol:g}")
    out.append("")
    rows = [k for k in rep.keys if k.compared and (all_keys or k.exceeds)]
    if rows:
        w = max(12, max(len(k.key) for k in rows))
        out.append(f"{'key':<{w}}  {'lines A/B':>9}  {'max abs':>10}  {'max rel':>10}  "
                   f"{'worst':>5}  status")
        for k in rows:
            status = f"EXCEEDS ({k.exceeding}/{k.compared})" if k.exceeds else "ok"
            if k.count_mismatch:
                status += " count mismatch"
            out.append(f"{k.key:<{w}}  {f'{k.occurrences_a}/{k.occurrences_b}':>9}  "
                       f"{short_number(k.max_abs):>10}  {short_number(k.max_rel):>10}  "
                       f"{('#' + str(k.worst_occurrence)):>5}  {status}")
        out.append("")
    if rep.only_in_a:
        out.append(f"only in A ({rep.name_a}): " + ", ".join(
            f"{k.key} x{k.occurrences_a}" for k in rep.only_in_a))
    if rep.only_in_b:
        out.append(f"only in B ({rep.name_b}): " + ", ".join(
            f"{k.key} x{k.occurrences_b}" for k in rep.only_in_b))
    if rep.occurrence_mismatches:
        out.append("occurrence counts differ: " + ", ".join(
            f"{k.key} (A {k.occurrences_a}, B {k.occurrences_b})"
            for k in rep.occurrence_mismatches))
    fd = rep.first_divergence
    if fd:
        where = ", ".join(x for x in (
            f"A line {fd['line_a']}" if fd.get("line_a") else "",
            f"B line {fd['line_b']}" if fd.get("line_b") else "") if x)
        out.append(f"first divergent key: {fd['key']} (occurrence {fd['occurrence']}; {where}): "
                   f"{fd['reason']}")
        if fd.get("values_a") is not None:
            out.append(f"  A: {_vals(fd['values_a'])}")
        if fd.get("values_b") is not None:
            out.append(f"  B: {_vals(fd['values_b'])}")
        if fd.get("rel") is not None:
            out.append(f"  abs {short_number(fd['abs'])}, rel {short_number(fd['rel'])}")
    worst = rep.worst_key
    summary = (f"{len(rep.pairs)} lines compared; largest relative difference "
               f"{short_number(rep.max_rel)}" + (f" ({worst.key})" if worst and worst.max_rel else ""))
    out.append(summary)
    if rep.ok:
        note = " (keys on one side only allowed)" if rep.structural_mismatch else ""
        out.append(f"PASS{note}")
    else:
        why = []
        if rep.exceeding_keys:
            why.append(f"{len(rep.exceeding_keys)} keys exceed the tolerance")
        if rep.structural_mismatch and not rep.allow_missing:
            why.append("keys or occurrences on one side only")
        out.append("FAIL: " + "; ".join(why))
    return "\n".join(out) + "\n"


# ---- command line -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # exit 2 with the usage, as argparse does, but never 1
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nanobragg-trace-diff",
                description="Compare two per-pixel traces (TRACE_C / TRACE_PY lines) key by key.")
    p.add_argument("a", help="first trace file (its line order is the pipeline order)")
    p.add_argument("b", help="second trace file")
    p.add_argument("--rtol", type=float, default=1e-6,
                   help="relative tolerance, against the line's largest magnitude (default 1e-6)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    p.add_argument("--pixel", type=int, nargs=2, metavar=("S", "F"),
                   help="compare the lines of this traced pixel (slow fast) when a file holds "
                        "several")
    p.add_argument("--allow-missing", action="store_true",
                   help="report keys or occurrences present on one side only without failing")
    p.add_argument("--failures-only", action="store_true",
                   help="list only the keys that exceed the tolerance")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _load(path: str, pixel, label: str) -> list[TraceRecord]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as exc:
        raise _UsageError(f"cannot read {label} {path}: {exc.strerror or exc}") from None
    recs = parse_trace(text)
    if not recs:
        raise _UsageError(f"{path}: no trace lines (TRACE_C:, TRACE_PY:, TRACE_*_PHI)")
    pix = pixels_of(recs)
    if pixel is not None:
        sel = select_pixel(recs, tuple(pixel))
        if not sel:
            if pix == [None]:
                return recs  # a file without pixel headers: take it as the pixel asked for
            raise _UsageError(f"{path}: no lines of pixel {tuple(pixel)} (it traces "
                              + ", ".join(str(p) for p in pix) + ")")
        return sel
    if len(pix) > 1:
        raise _UsageError(f"{path} holds traces of {len(pix)} pixels ("
                          + ", ".join(str(p) for p in pix) + "); choose one with --pixel S F")
    return recs


class _UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not (args.rtol >= 0 and args.atol >= 0):
        print("nanobragg-trace-diff: error: --rtol and --atol must be >= 0", file=sys.stderr)
        return 2
    try:
        ra = _load(args.a, args.pixel, "A")
        rb = _load(args.b, args.pixel, "B")
    except _UsageError as exc:
        print(f"nanobragg-trace-diff: error: {exc}", file=sys.stderr)
        return 2
    rep = compare(ra, rb, args.rtol, args.atol, allow_missing=args.allow_missing,
                  name_a=args.a, name_b=args.b)
    if args.json:
        sys.stdout.write(json.dumps(rep.to_dict(), indent=1) + "\n")
    else:
        sys.stdout.write(format_report(rep, all_keys=not args.failures_only))
    return rep.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["TraceRecord", "DiffReport", "KeyDiff", "PairDiff", "parse_trace", "short_number",
           "compare", "compare_text", "format_report", "select_pixel", "pixels_of", "main"]
