"""accounts sits below the apps that build on it (issue 22): it imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import accounts

ABOVE = {"filesystem", "links", "cluster"}


def imported_modules(source: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.append(node.module or "")
    return modules


def test_accounts_imports_none_of_the_apps_above_it():
    root = Path(accounts.__file__).parent
    upward = [f"{path.relative_to(root)}: {module}" for path in sorted(root.rglob("*.py"))
              for module in imported_modules(path.read_text(encoding="utf-8"))
              if module.split(".")[0] in ABOVE]
    assert upward == []
