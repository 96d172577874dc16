"""The package stands on its own: no upward imports, no sys.path tricks, and the wheel imports cleanly.

`src/waguard` is the library; `flows/` and `tasks/` sit above it and install beside it. Library code
reaching back up into them (or into `tests/`, `bench/`) only worked from a source checkout.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "waguard"
UPWARD = ("flows", "tasks", "tests", "bench")


def library_modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_library_code_never_imports_upward_or_edits_sys_path() -> None:
    upward, path_edits = [], []
    for path in library_modules():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        upward += [f"{rel}: imports {r}" for r in imported_roots(tree) & set(UPWARD)]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                path_edits.append(f"{rel}:{node.lineno}")
    assert not upward, upward
    assert not path_edits, f"sys.path used in library code: {path_edits}"


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    tree = ast.parse("def f():\n    from tasks.evidence import x\n")
    assert imported_roots(tree) & set(UPWARD) == {"tasks"}


def test_the_rooms_are_found_by_folder_name() -> None:
    """What a newcomer looks for, found from folder names alone."""
    assert "async def remove_unknown_users" in (SRC / "steps" / "business.py").read_text()
    assert "async def verify_app_secret_rotated" in (SRC / "steps" / "app_secret.py").read_text()
    for room in ("playbook", "steps", "meta", "vault", "slack", "intake", "evidence", "drills", "launcher", "local"):
        assert (SRC / room / "__init__.py").exists(), room
    flat = sorted(p.name for p in SRC.glob("*.py"))
    assert flat == ["__init__.py", "cli.py", "errors.py", "settings.py", "settings_env.py"], flat


@pytest.mark.slow
def test_the_wheel_installs_in_a_clean_venv_and_imports_every_module(tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is installed by `make setup`; it builds the wheel here")
    dist = tmp_path / "dist"
    subprocess.run([uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)], check=True,
                   capture_output=True, text=True)
    wheel = next(dist.glob("waguard-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--python", str(py), "--no-deps", str(wheel)], check=True,
                   capture_output=True, text=True)
    # Dependencies come from the project's venv (a path, not its .pth files: the editable install of
    # this checkout is not seen), so only the wheel's own files can provide waguard, flows and tasks.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = (
        "import importlib, pkgutil, waguard, flows, tasks\n"
        "names = [m.name for m in pkgutil.walk_packages(waguard.__path__, 'waguard.')]\n"
        "names += ['flows.' + m.name for m in pkgutil.iter_modules(flows.__path__)]\n"
        "names += ['tasks.' + m.name for m in pkgutil.iter_modules(tasks.__path__)]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(waguard.__file__); print(len(names))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([str(py), "-c", script], cwd=tmp_path, env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    assert out[0].startswith(str(venv)), out[0]
    assert int(out[1]) > 80
