"""Fixtures for the detection tools: a tiny generated VOC set."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection.data.synthetic import write_voc_dataset


@pytest.fixture(scope="session")
def shapes_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24-image generated VOC2007 tree at 96 px (train 14 / val 5 / test 5)."""
    out = tmp_path_factory.mktemp("shapes")
    write_voc_dataset(str(out), num_images=24, seed=1, size=96)
    return out / "VOC2007"
