"""The zygote preloads what a project's modules import inside functions, so a forked run need not.

In a subprocess: preloading changes sys.modules for good, as it does in the zygote.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_lazy_imports_of_project_modules_are_preloaded_transitively(tmp_path: Path) -> None:
    pkg = tmp_path / "proj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "flow.py").write_text(textwrap.dedent("""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from proj import typing_only
        async def step():
            from proj.evidence import snapshot  # only when the step runs
            from . import relative
            return snapshot
    """))
    (pkg / "evidence.py").write_text("def snapshot():\n    import proj.deeper\n")
    (pkg / "deeper.py").write_text("")
    (pkg / "relative.py").write_text("def f():\n    import proj.broken\n")
    (pkg / "broken.py").write_text("raise RuntimeError('no')\n")
    (pkg / "typing_only.py").write_text("raise RuntimeError('never imported at run time')\n")
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from waguard.launcher.preload import import_lazy_imports
        import proj.flow
        failed = import_lazy_imports([Path(sys.argv[1]).resolve()])
        loaded = sorted(m for m in sys.modules if m.startswith("proj"))
        print(loaded, sorted(failed))
    """)
    done = subprocess.run([sys.executable, "-c", script, str(pkg)], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded, failed = done.stdout.strip().split("] [")
    assert loaded == "['proj', 'proj.deeper', 'proj.evidence', 'proj.flow', 'proj.relative'"
    assert failed == "'proj.broken']"  # reported; the run imports it itself, as before


def test_models_are_built_before_the_fork_not_in_each_run() -> None:
    """Prefect defers its models' validators to their first use; the zygote builds them so a forked run
    does not rebuild the same schemas when it first reads its flow run."""
    code = textwrap.dedent("""
        from prefect.client.schemas.objects import FlowRun, State
        assert not FlowRun.__pydantic_complete__  # deferred: built on first validation
        from waguard.launcher.preload import complete_models
        assert complete_models() > 100
        assert FlowRun.__pydantic_complete__ and State.__pydantic_complete__
        assert complete_models() == 0  # nothing left to build
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
