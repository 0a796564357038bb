"""The API's names are the documented ones (the module imports gdb, so it is read, not run)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def exported() -> set[str]:
    tree = ast.parse((ROOT / "gdb_memcheck" / "api.py").read_text())
    names = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__")
    return {elt.value for elt in names.elts}


def test_every_api_function_is_documented_in_the_readme_and_nothing_else_is():
    section = (ROOT / "README.md").read_text().split("## Scripting", 1)[1].split("\n## ", 1)[0]
    table = section.split("| function | returns |", 1)[1].split("\n\n", 1)[0]
    first_cells = [row.split("|")[1] for row in table.strip().splitlines()[1:]]
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)\(", cell)}
    assert documented == exported() - {"Error", "Process"}
    assert "api.Error" in section and "A *process*" in section
