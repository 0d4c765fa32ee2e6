"""Package exports, imported on first use: the one way a package ``__init__`` exposes its API.

Every package's ``__init__`` holds its docstring and, if it exports names, a map from each
module to the names taken from it::

    _EXPORTS = {"detection.predictor": ("Predictor",)}
    __all__ = exported_names(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)

so ``import detection`` imports nothing else (no torch until a name is used), and
``detection.Predictor`` imports ``detection.predictor`` then. The import-layer test reads
``_EXPORTS`` as the imports they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def exported_names(exports: Mapping[str, Sequence[str]]) -> list[str]:
    """``__all__`` of a package: every name of ``exports``, sorted."""
    return sorted(name for names in exports.values() for name in names)


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: a name of ``exports`` is imported from its
    module when it is first asked for; any other name is an AttributeError (so ``from
    package import submodule`` still imports the submodule)."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
