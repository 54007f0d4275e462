"""Issue #14: no product module over 400 lines, no function over 60 (read with ``ast``)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("web", "workers", "tasks", "beat", "stations", "printers", "storage", "queues")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _product_modules() -> list[Path]:
    # Alembic revisions are generated, append-only history: they are not held to the limits.
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                  if "migrations" not in p.relative_to(ROOT).parts)


def _offenders(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    out = []
    if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
        out.append(f"{name}: module of {lines} lines")
    # ast.walk reaches nested functions and methods too; a function counts from its def line.
    for node in ast.walk(ast.parse(text, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{name}:{node.lineno}: {node.name}() of {length} lines")
    return out


def test_the_walk_sees_every_product_package():
    modules = _product_modules()
    for pkg in PACKAGES:
        assert (ROOT / pkg / "__init__.py") in modules, pkg
    assert not [p for p in modules if "migrations" in p.relative_to(ROOT).parts]


def test_no_module_over_400_lines_and_no_function_over_60():
    offenders = [o for path in _product_modules() for o in _offenders(path)]
    assert not offenders, (f"over {MAX_MODULE_LINES} lines per module or {MAX_FUNCTION_LINES} "
                           "per function:\n" + "\n".join(offenders))
