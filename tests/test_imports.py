"""Import rules for the package and the services, read from the source with ast (nothing is imported).

A `_name` is private to its module: importing it elsewhere couples two modules through a detail
neither declared shared, and the next change to it breaks the other one silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = (REPO / "src" / "facestream", REPO / "services")


def _module_name(path: Path) -> str:
    base = REPO / "src" if path.is_relative_to(REPO / "src") else REPO
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """`from OTHER import _name` in one module's source, as 'line: from X import _name'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        origin = _absolute(module, node, is_package)
        if origin == module:
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{node.lineno}: from {origin} import {alias.name}")
    return found


def test_no_module_imports_a_private_name_from_another() -> None:
    files = sorted(p for root in ROOTS for p in root.rglob("*.py"))
    assert len(files) > 50  # the walk found the code (a wrong root would pass vacuously)
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in files
        for line in private_imports(
            path.read_text(), _module_name(path), is_package=path.name == "__init__.py"
        )
    ]
    assert found == []


def test_the_check_sees_absolute_and_relative_private_imports() -> None:
    source = (
        "from facestream.codec import _bbox, Codec\n"
        "from .wire import _alert, REVIEWS\n"
        "from . import _x\n"
        "from .app import __version__\n"
    )
    assert private_imports(source, "facestream.review.app") == [
        "1: from facestream.codec import _bbox",
        "2: from facestream.review.wire import _alert",
        "3: from facestream.review import _x",
    ]
    assert private_imports("from .wire import _a\n", "facestream.review", is_package=True) == [
        "1: from facestream.review.wire import _a"
    ]
    assert private_imports("from facestream.review.app import _own\n", "facestream.review.app") == []


def test_one_wall_clock_in_milliseconds() -> None:
    """`accountability.clock.now_ms` is the one: a copy per module is one more place to change or patch."""
    pending = {REPO / "src" / "facestream" / "camera" / "sources.py"}  # camera work in progress moves it
    defined = [
        str(path.relative_to(REPO))
        for root in ROOTS
        for path in sorted(root.rglob("*.py"))
        if path not in pending
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "now_ms"
    ]
    assert defined == ["src/facestream/accountability/clock.py"]
