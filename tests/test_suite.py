"""Rules the test suite keeps about itself, where a mistake passes silently."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _autouse(decorator: ast.expr) -> bool:
    """``@pytest.fixture(autouse=True)`` (or ``@fixture(...)``)."""
    if not isinstance(decorator, ast.Call):
        return False
    name = decorator.func
    named = (isinstance(name, ast.Attribute) and name.attr == "fixture") or (
        isinstance(name, ast.Name) and name.id == "fixture"
    )
    return named and any(
        k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in decorator.keywords
    )


def autouse_async_fixtures(source: str, filename: str) -> list[str]:
    """Where ``source`` defines an autouse fixture as ``async def``."""
    return [
        f"{filename}:{node.lineno} {node.name}"
        for node in ast.walk(ast.parse(source, filename))
        if isinstance(node, ast.AsyncFunctionDef) and any(map(_autouse, node.decorator_list))
    ]


def test_no_autouse_fixture_is_async() -> None:
    """pytest-trio runs an async fixture only when a test names it; an
    autouse one is never set up nor torn down, and nothing warns
    (python-trio/pytest-trio#123). tests/test_app.py's connection closer was
    one, and its connections stayed open until the interpreter's exit."""
    found = [
        where
        for path in sorted(TESTS.rglob("*.py"))
        for where in autouse_async_fixtures(path.read_text(), str(path.relative_to(TESTS)))
    ]
    assert found == [], f"autouse fixtures must be sync under pytest-trio: {found}"


def test_the_rule_sees_an_autouse_async_fixture() -> None:
    source = (
        "import pytest\n"
        "@pytest.fixture(autouse=True)\n"
        "async def closer():\n    yield\n"
        "@pytest.fixture\n"
        "async def named():\n    yield 1\n"
        "@pytest.fixture(autouse=True)\n"
        "def sync_one():\n    yield\n"
    )
    assert autouse_async_fixtures(source, "x.py") == ["x.py:3 closer"]
