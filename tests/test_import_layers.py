"""The house's layers point down only: read every module's imports and check each arrow.

engine (the foundation) <- backbones (models) <- backbones.pretrain, detection (the two
tasks, which do not import each other) <- tools, benchmarks (the command line). configs is
data and may be read by anyone above engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "backbones", "detection", "tools", "benchmarks", "configs")

# layer -> the layers it may import (its own included)
ALLOWED = {
    "engine": {"engine"},
    "backbones": {"engine", "backbones"},
    "backbones.pretrain": {"engine", "backbones", "backbones.pretrain"},
    "detection": {"engine", "backbones", "detection", "configs"},
    "configs": {"configs"},
    "tools": {"engine", "backbones", "backbones.pretrain", "detection", "tools", "configs",
              "benchmarks"},
    "benchmarks": {"engine", "backbones", "backbones.pretrain", "detection", "configs",
                   "benchmarks"},
}  # fmt: skip


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None for the standard library and third parties."""
    if module == "backbones.pretrain" or module.startswith("backbones.pretrain."):
        return "backbones.pretrain"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found += [(node.lineno, f"{base}.{a.name}" if base else a.name) for a in node.names]
    return found


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def reversed_arrows(root: Path = ROOT) -> list[str]:
    """Every import that points up or sideways, as "file:line imports name"."""
    wrong = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            here = layer_of(module)
            assert here is not None
            for line, name in imported_modules(path, module):
                there = layer_of(name)
                if there is not None and there not in ALLOWED[here]:
                    wrong.append(f"{path.relative_to(root)}:{line} imports {name}")
    return wrong


def test_layers_only_point_down() -> None:
    assert reversed_arrows() == []


def test_every_package_is_read() -> None:
    counted = {layer_of(module_name(p)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert counted == set(ALLOWED)


def test_a_reversed_arrow_is_caught(tmp_path: Path) -> None:
    """The check itself: an engine module importing detection is reported."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "backbones" / "pretrain").mkdir()
    (tmp_path / "backbones" / "pretrain" / "__init__.py").write_text("")
    (tmp_path / "engine" / "bad.py").write_text("from detection.config import Config\n")
    (tmp_path / "detection" / "bad.py").write_text("import backbones.pretrain.task\n")
    (tmp_path / "backbones" / "ok.py").write_text("from engine.io import read_json\n")
    assert reversed_arrows(tmp_path) == [
        "engine/bad.py:1 imports detection.config.Config",
        "detection/bad.py:1 imports backbones.pretrain.task",
    ]
