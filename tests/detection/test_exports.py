"""Every name a package exports resolves (the lazy exports of detection.data included)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package", ["backbones", "backbones.pretrain", "detection", "detection.data",
                "detection.evaluation", "detection.modeling"]
)  # fmt: skip
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in getattr(module, "__all__", []) if not hasattr(module, name)]
    assert missing == []
