"""detection/config.py: the checks the detection schema adds to engine's loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection.config import load_config
from engine.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = (
    "expected a class name that can name a file of its own (test.metrics voc07 writes "
    "voc_results/comp4_det_<split>_<name>.txt)"
)


@pytest.mark.parametrize(
    ("value", "name", "reason"),
    [
        ("[cat, a/b]", "a/b", "holds a '/'"),
        ("[cat, '..']", "..", "holds a '.' or '..' part"),
        ("[cat, '.']", ".", "holds a '.' or '..' part"),
        ("[cat, 'a\\b']", "a\\b", "holds a backslash or a drive"),
        ("[cat, '']", "", "is empty or has leading/trailing spaces"),
        ('[cat, "a\\tb"]', "a\tb", "holds a control character"),
        (f"[cat, {'x' * 201}]", "x" * 201, "is longer than 200 bytes"),
    ],
)
def test_class_names_that_cannot_name_a_file_are_refused_at_load(
    value: str, name: str, reason: str
) -> None:
    with pytest.raises(UserError) as info:
        load_config(None, [f"data.class_names={value}"])
    assert str(info.value) == f"key 'data.class_names': {name!r} {reason}; {EXPECTED}"


def test_class_names_with_spaces_load_and_repeats_do_not() -> None:
    cfg = load_config(None, ["data.class_names=[traffic light, 'a.b', ünï]"])
    assert cfg.data.class_names == ["traffic light", "a.b", "ünï"]
    with pytest.raises(UserError) as info:
        load_config(None, ["data.class_names=[cat, dog, cat]"])
    assert str(info.value) == f"key 'data.class_names': 'cat' is listed twice; {EXPECTED}"
    with pytest.raises(UserError, match=r"'a/b' holds a '/'; .* \(test\.metrics voc writes "):
        load_config(None, ["data.class_names=[a/b]", "test.metrics=[coco, voc]"])


def test_without_voc_metrics_class_names_name_no_file() -> None:
    # torchvision's COCO labels: "N/A" for the unused category ids, many times
    cfg = load_config(ROOT / "configs/detection/torchvision_r50_fpn_coco.yaml")
    assert cfg.test.metrics == ["coco"] and cfg.data.class_names.count("N/A") == 10
    with pytest.raises(UserError, match=r"^key 'data.class_names': 'N/A' holds a '/'; "):
        load_config(ROOT / "configs/detection/torchvision_r50_fpn_coco.yaml",
                    ["test.metrics=[coco, voc07]"])  # fmt: skip
