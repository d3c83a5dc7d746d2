"""The house rules of the source tree (issue 15), checked without importing anything heavy.

- no module over MAX_LINES lines (protoc's *_pb2.py excepted: regenerated, not read);
- no folder holding more than MAX_MODULES modules (__init__.py not counted), tests/ included;
- serving/client/ stands alone: it imports neither `pipeline` nor the server (`serving.server`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "serving", "models")
MAX_LINES = 300
MAX_MODULES = 12
CLIENT_MAY_NOT_IMPORT = ("pipeline", "serving.server")


def _modules(top: str) -> list[Path]:
    return sorted(path for path in (ROOT / top).rglob("*.py")
                  if "__pycache__" not in path.parts and not path.name.endswith("_pb2.py"))


def _line_count(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def test_no_module_is_over_the_line_limit():
    offenders = [f"{path.relative_to(ROOT)}: {lines} lines" for top in PACKAGES for path in _modules(top)
                 if (lines := _line_count(path)) > MAX_LINES]
    assert not offenders, f"modules over {MAX_LINES} lines (split them by concept):\n" + "\n".join(offenders)


def test_no_folder_holds_more_than_a_dozen_modules():
    counts: dict[Path, int] = {}
    for top in (*PACKAGES, "tests"):
        for path in _modules(top):
            if path.name != "__init__.py":
                counts[path.parent] = counts.get(path.parent, 0) + 1
    offenders = [f"{folder.relative_to(ROOT)}/: {count} modules" for folder, count in sorted(counts.items())
                 if count > MAX_MODULES]
    assert not offenders, (f"folders with more than {MAX_MODULES} modules (a room is missing):\n"
                           + "\n".join(offenders))


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def test_the_client_imports_neither_the_pipeline_nor_the_server():
    offenders = []
    for path in _modules("serving/client"):
        for name in _imported_names(ast.parse(path.read_text(), filename=str(path))):
            if any(name == banned or name.startswith(banned + ".") for banned in CLIENT_MAY_NOT_IMPORT):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "serving/client must install alone:\n" + "\n".join(offenders)


def test_the_import_check_sees_both_import_forms():
    tree = ast.parse("import pipeline.tracking\nfrom serving import server\nfrom serving.server.core import errors\n")
    names = _imported_names(tree)
    assert "pipeline.tracking" in names and "serving.server" in names and "serving.server.core" in names
