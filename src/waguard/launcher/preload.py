"""What the zygote imports before it forks: Prefect's engine, the flows, and what the runs import later.

A module a run imports after the fork is found, compiled and executed again by every run: measured
in a forked playbook run, the evidence snapshot's imports inside a function (the evidence package,
the intake's audit reader and with it starlette, cryptography) and Prefect's task engine (with
graphviz) took 0.84 s before the first step could call Graph. So besides the flows, the zygote
imports every module that the project's loaded modules import inside functions (found in their
source, repeated until nothing new loads), and the Prefect modules the engine imports lazily.

A run reports the modules it still had to import itself (`imported_after_fork`), so a miss shows in
the launcher's log instead of as a slow run.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from typing import Any

# Prefect's engine imports these only when a run gets there (measured in forked playbook runs).
PRELOAD = ("prefect", "prefect.flow_engine", "prefect.engine", "prefect._internal.control_listener",
           "prefect._internal.metrics", "prefect.runtime", "prefect._internal.observers",
           "prefect._internal._observation_delivery", "prefect.task_engine", "prefect._internal.states",
           "prefect.utilities.visualization", "prefect.concurrency._sync", "prefect.concurrency.asyncio",
           "anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.stapled", "anyio.streams.tls",
           "rich._emoji_codes", "encodings.idna", "waguard.launcher.child")  # idna: a client's first connect
_preloaded: frozenset[str] = frozenset()


def preload(project: Path, entrypoints: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Import Prefect's engine, the flows and their lazy imports; returns {entrypoint: Flow}, misses."""
    global _preloaded
    for name in PRELOAD:
        importlib.import_module(name)
    from prefect.flows import load_flow_from_entrypoint as load

    flows: dict[str, Any] = {}
    misses: dict[str, str] = {}
    for entrypoint in entrypoints:
        try:
            flows[entrypoint] = load(str(project / entrypoint), use_placeholder_flow=False)
        except Exception as err:  # the child will load it itself: slow but correct, and reported
            misses[entrypoint] = f"{type(err).__name__}: {err}"
    waguard_root = Path(__file__).resolve().parents[1]
    misses |= import_lazy_imports([project.resolve(), waguard_root])
    complete_models()
    _preloaded = frozenset(sys.modules)
    return flows, misses


def complete_models() -> int:
    """Build every pydantic model's validator now, once, instead of in each run.

    Prefect's models defer their build (`defer_build=True`) to the first validation; in a forked run
    that first validation is reading its own flow run, so every run rebuilt the same schemas
    (measured: about a fifth of a forked run's time before its Running proposal). About 260 models,
    0.2 s here. Returns how many were built.
    """
    import pydantic

    def subclasses(cls: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
        found: list[type[pydantic.BaseModel]] = []
        for sub in cls.__subclasses__():
            found += [sub, *subclasses(sub)]
        return found

    built = 0
    for model in set(subclasses(pydantic.BaseModel)):
        if getattr(model, "__pydantic_complete__", True):
            continue
        try:
            model.model_rebuild(force=True)
            built += 1
        except Exception:  # noqa: BLE001 - a model that cannot build yet builds (or fails) when first used
            continue
    return built


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, package: str) -> list[str]:
    """Modules a source imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    names: list[str] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]  # submodules?
        todo.extend(ast.iter_child_nodes(node))
    return names


def _under(path: str | None, roots: list[Path], installed: Path) -> bool:
    """A project source file: under a root, not an installed package (a venv may sit in the project)."""
    if not path:
        return False
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(root) for root in roots) and not resolved.is_relative_to(installed)


def import_lazy_imports(roots: list[Path]) -> dict[str, str]:
    """Import what loaded modules under `roots` import inside functions, until nothing new loads.

    Returns {module: error} for imports that failed (the run then imports them itself, as before).
    """
    from importlib.util import find_spec

    installed = Path(sys.prefix).resolve()
    scanned: set[str] = set()
    failed: dict[str, str] = {}
    while True:
        todo = [(name, module) for name, module in list(sys.modules.items())
                if name not in scanned and _under(getattr(module, "__file__", None), roots, installed)]
        if not todo:
            return failed
        for name, module in todo:
            scanned.add(name)
            try:
                # A module without a file: Path("") is the directory, and reading it is an OSError.
                tree = ast.parse(Path(module.__file__ or "").read_bytes())
            except (OSError, SyntaxError, ValueError):
                continue
            package = name if hasattr(module, "__path__") else name.rpartition(".")[0]
            for wanted in _imported_names(tree, package):
                if not wanted or wanted in sys.modules or wanted in failed:
                    continue
                try:
                    if find_spec(wanted) is None:  # `from x import name`: a name, not a submodule
                        continue
                    importlib.import_module(wanted)
                except (ModuleNotFoundError, ValueError):
                    continue  # an attribute of a module, or an optional dependency that is absent
                except Exception as err:  # noqa: BLE001 - reported; the run imports it itself
                    failed[wanted] = f"{type(err).__name__}: {err}"


def imported_after_fork() -> list[str]:
    """Modules this run process imported itself (not preloaded by its zygote), sorted."""
    return sorted(set(sys.modules) - _preloaded) if _preloaded else []
