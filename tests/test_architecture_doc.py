"""docs/architecture.md stays true: every module it names exists, and every module of the package is named."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGE = ROOT / "plugins" / "numa_ops"


def _tokens() -> set[str]:
    """Every word inside backticks in the doc, without punctuation around it."""
    return {part.strip("(),") for code in re.findall(r"`([^`]+)`", DOC) for part in code.split(" ")}


def test_every_module_of_the_package_is_in_the_doc():
    tokens = _tokens()
    modules = {
        str(p.relative_to(PACKAGE).with_suffix("")).removesuffix("/__init__")
        for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts
    } - {"__init__"}

    def named(module: str) -> bool:  # `db/load`, or `db/` with `load` in its row
        package, _, name = module.rpartition("/")
        return module in tokens or (package and f"{package}/" in tokens and name in tokens) or (
            not package and (module in tokens or f"{module}/" in tokens))

    missing = {m for m in modules if not named(m)}
    assert missing == set(), f"modules docs/architecture.md does not name: {sorted(missing)}"


def test_every_step_of_the_path_of_one_run_names_modules_that_exist():
    path = DOC.split("## The path of one run", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\. (.*?)(?=^\d+\. |\Z)", path, flags=re.S | re.M)
    assert len(steps) >= 10
    for step in steps:
        for code in re.findall(r"`([^`]+)`", step):
            head = code.split(" ")[0]
            head = head if head.startswith("plugins/") else head.split(".")[0]
            if re.fullmatch(r"(worker|db|report)/\w+", head):
                module = PACKAGE / (head + ".py")
                assert module.exists() or (PACKAGE / head / "__init__.py").exists(), code
            elif head.startswith("plugins/"):
                assert (ROOT / head).exists(), code
