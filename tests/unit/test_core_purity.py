"""The core does no I/O and reads no clock: it may not import these modules."""

import ast
from pathlib import Path

import pytest

FORBIDDEN = {"asyncio", "aiohttp", "paho", "gpiozero", "serial", "cv2", "sqlite3", "time",
             "socket", "os", "random", "datetime", "threading"}
CORE = Path(__file__).resolve().parents[2] / "gateway" / "core"


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"


def test_core_has_the_modules_the_design_names() -> None:
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"saga", "steps", "breaker", "backoff", "balancing", "allocation", "errors"} <= names


def test_readme_diagrams_are_generated_from_the_current_tables() -> None:
    from gateway.core.diagrams import render

    readme = (CORE.parents[1] / "README.md").read_text()
    assert render() in readme, "README diagrams are out of date: run `make diagrams`"
