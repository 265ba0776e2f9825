"""The layout holds: imports run one way (the API, the worker, the client and the command above the
core, the core above the simulator), the worker never loads FastAPI, the API never loads torch,
job records are read through the typed Job only, and job kinds and output formats are listed once.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim_core", "jobs", "app", "worker", "client", "bragg")
#: what each package may import of ours
ALLOWED = {
    "sim_core": {"sim_core"},
    "jobs": {"sim_core", "jobs"},
    "app": {"sim_core", "jobs", "app"},
    "worker": {"sim_core", "jobs", "worker"},
    "client": {"sim_core", "jobs", "client"},
    "bragg": set(PACKAGES),
}


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _imports(tree: ast.AST, path: Path) -> set[str]:
    """The top-level packages a module imports anywhere (functions included)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside its own package
                out.add(path.relative_to(ROOT).parts[0])
            elif node.module:
                out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    wrong = {}
    for path, tree in _modules(package):
        bad = (_imports(tree, path) & set(PACKAGES)) - ALLOWED[package]
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"imports that run upward from {package}: {wrong}"


def test_the_core_needs_no_web_framework_nor_rq_worker():
    for path, tree in _modules("jobs"):
        mods = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods.add(node.module)
            elif isinstance(node, ast.Import):
                mods |= {a.name for a in node.names}
        assert not {m for m in mods if m.split(".")[0] in ("fastapi", "starlette", "uvicorn")}, path
        assert "rq.worker" not in mods, path


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


def test_the_worker_never_loads_fastapi():
    loaded = _loaded("import worker.main, worker.tasks, worker.worker, worker.context, "
                     "jobs.kinds, jobs.sweeper, jobs.dataset")
    assert not loaded & {"fastapi", "starlette", "uvicorn", "app"}, loaded


def test_the_api_never_loads_torch():
    loaded = _loaded("import app.main; app.main.create_app()")
    assert "torch" not in loaded


#: names that hold a job record in the service's code
_RECORD = r"\b(?:rec|job|parent|child|tracer|trec|one|record|src\.job)"
_STRING_KEY = re.compile(_RECORD + r"""(?:\[["']\w+["']\]|\.get\(["']\w+["'])""")


def test_no_job_record_is_read_by_string_key():
    found = []
    for package in ("app", "worker", "jobs"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "jobs/job.py" or rel.startswith("jobs/records/"):
                continue  # the model and the records convert the hash
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _STRING_KEY.search(line):
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert found == [], "\n".join(found)


def test_job_kinds_are_compared_through_the_enum():
    literal = re.compile(r"""kind\s*[!=]=\s*["'](render|trace|series|verification)["']|kind=["'](render|trace|series|verification)["']""")
    found = [f"{p.relative_to(ROOT)}:{n}" for package in ("app", "worker", "jobs", "bragg")
             for p in sorted((ROOT / package).rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert found == []


def test_artifact_names_are_listed_once():
    from sim_core.output_formats import COMMANDS, OUTPUT_FORMATS, RUN_METADATA, SHA256SUMS
    names = [f.artifact for f in OUTPUT_FORMATS] + [RUN_METADATA, COMMANDS, SHA256SUMS]
    found = []
    for package in ("app", "worker", "jobs", "client", "bragg"):
        for p in sorted((ROOT / package).rglob("*.py")):
            text = p.read_text()
            for name in names:
                # examples in the OpenAPI description are documentation, not a listing
                for m in re.finditer(re.escape(f'"{name}"'), text):
                    line = text[:m.start()].count("\n") + 1
                    if "example" not in text.splitlines()[line - 1].lower():
                        found.append(f"{p.relative_to(ROOT)}:{line}: {name}")
    assert found == [], found


def test_every_ctx_is_typed():
    untyped = []
    for package in ("app", "worker", "jobs"):
        for path, tree in _modules(package):
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for a in node.args.args + node.args.kwonlyargs:
                        if a.arg == "ctx" and a.annotation is None:
                            untyped.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert untyped == []
