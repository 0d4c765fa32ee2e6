"""The house's layers point down only: read every module's imports and check each arrow.

engine (the foundation) <- backbones (models) <- backbones.pretrain, detection (the two
tasks, which do not import each other) <- tools, benchmarks (the command line). configs is
data and may be read by anyone above engine.

An import is any of: an ``import`` statement (a relative one resolved against the file's
package, which for a package's ``__init__`` is the package itself); an
``importlib.import_module`` / ``import_module`` / ``__import__`` call with a constant name;
a module of an ``_EXPORTS`` map (a package's lazy exports, ``engine.exports``). A dynamic
import whose name is computed at run time cannot be checked, and is itself reported unless
its file is in ``READ_ELSEWHERE``. The checker runs on any tree (``reversed_arrows(root)``):
the tests at the bottom build small synthetic packages in tmp_path, one per kind of import.
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

# files whose run-time-named imports are checked another way
READ_ELSEWHERE = {
    "engine/exports.py": "imports the modules of the _EXPORTS maps, which are read as imports",
    "tools/cli.py": "imports the command modules named in COMMANDS (tools.*, the top layer)",
}
DYNAMIC = "<a module named at run time>"  # what an unreadable dynamic import is recorded as
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, or None for the standard library and third parties."""
    if module == "backbones.pretrain" or module.startswith("backbones.pretrain."):
        return "backbones.pretrain"
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def resolve(name: str, level: int, package: str) -> str:
    """An import's absolute name: ``level`` dots up from ``package`` (1: the package itself)."""
    if not level:
        return name
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file (see the module docstring)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(node.module or "", node.level, package)
            found += [(node.lineno, f"{base}.{a.name}" if base else a.name) for a in node.names]
        elif isinstance(node, ast.Call) and _called_name(node.func) in IMPORT_FUNCTIONS:
            found.append((node.lineno, _dynamic_name(node, package)))
        elif isinstance(node, ast.Assign) and _is_exports_map(node):
            assert isinstance(node.value, ast.Dict)
            found += [(key.lineno, _constant(key) or DYNAMIC) for key in node.value.keys if key]
    return found


def _called_name(func: ast.expr) -> str | None:
    """``import_module`` for ``importlib.import_module(...)`` or ``import_module(...)``."""
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _dynamic_name(call: ast.Call, package: str) -> str:
    """The module an import call names: its constant first argument (a leading dot is relative
    to the second argument if that is a constant, else to this file's package, as
    ``import_module(".x", __package__)``), else DYNAMIC."""
    name = _constant(call.args[0]) if call.args else None
    if name is None:
        return DYNAMIC
    dots = len(name) - len(name.lstrip("."))
    anchor = _constant(call.args[1]) if len(call.args) > 1 else None
    return resolve(name[dots:], dots, anchor or package)


def _constant(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_exports_map(node: ast.Assign) -> bool:
    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names == ["_EXPORTS"] and isinstance(node.value, ast.Dict)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def reversed_arrows(root: Path = ROOT) -> list[str]:
    """Every import that points up or sideways, as "file:line imports name", and every import
    named at run time that nothing else checks."""
    wrong = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module, where = module_name(path, root), path.relative_to(root).as_posix()
            here = layer_of(module)
            assert here is not None
            for line, name in imported_modules(path, module):
                there = layer_of(name)
                unread = name == DYNAMIC and where not in READ_ELSEWHERE
                if unread or (there is not None and there not in ALLOWED[here]):
                    wrong.append(f"{where}:{line} imports {name}")
    return wrong


def test_layers_only_point_down() -> None:
    assert reversed_arrows() == []


def test_every_package_is_read() -> None:
    counted = {layer_of(module_name(p)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert counted == set(ALLOWED)


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Empty packages (engine, backbones, backbones.pretrain, detection, ...) plus ``files``."""
    for package in (*PACKAGES, "backbones/pretrain"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_a_reversed_arrow_is_caught(tmp_path: Path) -> None:
    """The check itself: an engine module importing detection is reported."""
    _tree(tmp_path, {
        "engine/bad.py": "from detection.config import Config\n",
        "detection/bad.py": "import backbones.pretrain.task\n",
        "backbones/ok.py": "from engine.io import read_json\n",
    })  # fmt: skip
    assert reversed_arrows(tmp_path) == [
        "engine/bad.py:1 imports detection.config.Config",
        "detection/bad.py:1 imports backbones.pretrain.task",
    ]


def test_relative_imports_resolve_against_the_package_an_init_is(tmp_path: Path) -> None:
    """In ``backbones/__init__.py`` ``.`` is ``backbones`` (not its parent): ``from .pretrain
    import task`` is backbones importing the pretraining task, one layer up."""
    _tree(tmp_path, {
        "backbones/__init__.py": "from .pretrain import task\nfrom . import layers\n",
        "backbones/pretrain/evaluation.py": "from ..layers import Backbone\nfrom . import data\n",
        "detection/__init__.py": "from .predictor import Predictor\n",
    })  # fmt: skip
    assert reversed_arrows(tmp_path) == ["backbones/__init__.py:1 imports backbones.pretrain.task"]


def test_import_module_calls_with_a_constant_name_are_read(tmp_path: Path) -> None:
    _tree(tmp_path, {
        "engine/bad.py": "import importlib\nimportlib.import_module('detection.config')\n",
        "engine/also.py": "from importlib import import_module\nimport_module('backbones.vgg')\n",
        "engine/old.py": "__import__('detection')\n",
        "backbones/ok.py": "import importlib\nimportlib.import_module('.io', 'engine')\n",
        "backbones/rel.py": "import importlib\n"
                            "importlib.import_module('.pretrain.task', __package__)\n",
    })  # fmt: skip
    assert reversed_arrows(tmp_path) == [
        "engine/also.py:2 imports backbones.vgg",
        "engine/bad.py:2 imports detection.config",
        "engine/old.py:1 imports detection",
        "backbones/rel.py:2 imports backbones.pretrain.task",
    ]


def test_a_module_named_at_run_time_is_reported(tmp_path: Path) -> None:
    name = (
        "import importlib\n\ndef load(x):\n    return importlib.import_module(f'detection.{x}')\n"
    )
    _tree(tmp_path, {"engine/bad.py": name, "engine/exports.py": name})
    assert reversed_arrows(tmp_path) == [f"engine/bad.py:4 imports {DYNAMIC}"]  # not exports.py


def test_the_modules_of_lazy_exports_are_read(tmp_path: Path) -> None:
    exports = """\
_EXPORTS = {
    "backbones.build": ("build_backbone",),
    "detection.config": ("Config",),
}
"""
    _tree(tmp_path, {"backbones/__init__.py": exports})
    assert reversed_arrows(tmp_path) == ["backbones/__init__.py:3 imports detection.config"]
