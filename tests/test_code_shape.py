"""The package's shape limits: untyped JSON mappings counted, no function over 60 lines, no module over 450."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
MAX_UNTYPED_MAPPINGS = 40  # dict[str, Any] and Mapping[str, Any], aliases of them included
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 450
UNTYPED = re.compile(r"\b(?:dict|Mapping)\[str, Any\]")


def _modules() -> list[Path]:
    return sorted(PLUGINS.rglob("*.py"))


def _aliases(tree: ast.Module, source: str) -> set[str]:
    """Names bound at module level to an untyped mapping (``Json = dict[str, Any]``, ``Json: TypeAlias = ...``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            if UNTYPED.fullmatch(ast.get_source_segment(source, node.value) or ""):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def count_untyped(sources: dict[str, str]) -> int:
    """Uses of ``dict[str, Any]``/``Mapping[str, Any]`` in ``sources``, and of any alias of them."""
    trees = {name: ast.parse(src) for name, src in sources.items()}
    aliases = set().union(*(_aliases(trees[n], s) for n, s in sources.items())) if sources else set()
    alias_use = re.compile(rf"\b({'|'.join(map(re.escape, sorted(aliases)))})\b") if aliases else None
    total = 0
    for src in sources.values():
        total += len(UNTYPED.findall(src))
        if alias_use:
            total += sum(1 for line in src.splitlines() for _ in alias_use.finditer(line)
                         if not re.match(rf"{alias_use.pattern}\s*(:\s*TypeAlias\s*)?=", line))
    return total


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        pytest.param({"a": "from typing import Any\nx: dict[str, Any] = {}\n"}, 1, id="one-use"),
        pytest.param({"a": "from typing import Any\nJson = dict[str, Any]\ndef f(x: Json) -> Json: ...\n"}, 3,
                     id="an-alias-and-its-uses"),
        pytest.param({"a": "from typing import Any\nx: dict[str, int] = {}\ny: Mapping[str, object]\n"}, 0,
                     id="typed"),
    ],
)
def test_untyped_mappings_are_counted_with_their_aliases(sources, expected):
    assert count_untyped(sources) == expected


def test_few_untyped_json_mappings():
    assert count_untyped({str(p): p.read_text() for p in _modules()}) <= MAX_UNTYPED_MAPPINGS


def test_no_long_function_and_no_long_module():
    too_long = []
    for path in _modules():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PLUGINS)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PLUGINS)}:{node.lineno} {node.name}: {lines} lines")
    assert too_long == []
