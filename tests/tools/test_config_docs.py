"""docs/CONFIG.md is generated from the dataclasses and must be current."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from backbones.pretrain.config import PretrainConfig
from detection.config import Config
from tools.config_docs import field_comments, render, rows

ROOT = Path(__file__).resolve().parents[2]


def test_config_md_is_current():
    committed = (ROOT / "docs" / "CONFIG.md").read_text()
    assert committed == render(), "docs/CONFIG.md is stale: run `make docs`"


def test_every_leaf_key_has_a_comment():
    for cls in (Config, PretrainConfig):
        missing = [key for key, _, _, meaning in rows(cls()) if not meaning.strip()]
        assert missing == []


def test_comments_are_read_from_the_source():
    @dataclasses.dataclass
    class Tiny:
        a: int = 1  # the first
        b: list[int] = dataclasses.field(  # spans lines
            default_factory=list
        )

    assert field_comments(Tiny) == {"a": "the first", "b": "spans lines"}
