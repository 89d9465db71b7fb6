"""The layering (pyproject's [tool.importlinter]) holds, and the check really fails when it is broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from helpers import ROOT

pytestmark = pytest.mark.system

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts over the `mockserver` package found in `package_parent`."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=package_parent, env=env, capture_output=True, text=True, timeout=120)


def broken_copy(tmp_path: Path, module: str, line: str) -> Path:
    shutil.copytree(ROOT / "mockserver", tmp_path / "mockserver", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "mockserver" / module).open("a") as fh:
        fh.write(f"\n{line}\n")
    return tmp_path


def test_the_package_keeps_its_layers() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("store/base.py", "from ..web import app as _web  # noqa", "Layers"),
    ("domain/mock.py", "from ..providers import face as _face  # noqa", "Layers"),
    ("pipeline/steps.py", "from ..web import door as _door  # noqa", "Layers"),
    ("contract/validation.py", "from ..store import base as _base  # noqa", "Layers"),
    ("providers/thirtyfiveup/core.py", "from ..threeplship import core as _other  # noqa", "Providers"),
    ("providers/face.py", "from . import registry as _registry  # noqa", "Providers"),
    ("domain/mock.py", "import flask as _flask  # noqa", "nothing imports Flask"),
    ("pipeline/run.py", "import werkzeug as _werkzeug  # noqa", "nothing imports Flask"),
])
def test_a_lower_layer_importing_a_higher_one_fails_the_check(tmp_path: Path, module: str, line: str,
                                                              broken: str) -> None:
    result = lint_imports(broken_copy(tmp_path, module, line))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
    assert str(tmp_path) not in result.stderr  # the copy was analysed, not an error about it


def test_no_module_of_the_package_imports_itself_back() -> None:
    graph = grimp.build_graph("mockserver")
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if graph.chain_exists(importer=imported, imported=module)})
    assert cycles == []
