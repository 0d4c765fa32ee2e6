"""detection.train: what is refused before a run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from detection.config import load_config
from detection.train import check_norm_can_train
from engine.errors import UserError


def config(out: Path, **sets: str):
    return load_config(None, [f"output_dir={out}", *(f"{k}={v}" for k, v in sets.items())])


def test_frozen_bn_needs_backbone_weights_or_a_checkpoint_to_resume(tmp_path: Path):
    scratch = config(tmp_path, **{"model.backbone.norm": "frozen_bn"})
    assert scratch.model.backbone.weights == ""
    with pytest.raises(UserError, match=r"^model\.backbone\.norm is frozen_bn .*norm=bn"):
        check_norm_can_train(scratch, resume=False)
    with pytest.raises(UserError, match="frozen_bn"):  # --resume, but nothing to resume from
        check_norm_can_train(scratch, resume=True)
    (tmp_path / "checkpoint_10.pth").write_bytes(b"")  # resume reads the weights from it
    check_norm_can_train(scratch, resume=True)
    with pytest.raises(UserError, match="frozen_bn"):  # a new run ignores the checkpoint
        check_norm_can_train(scratch, resume=False)


@pytest.mark.parametrize(
    "sets",
    [{"model.backbone.norm": "bn"}, {"model.backbone.norm": "syncbn"},
     {"model.backbone.norm": "frozen_bn", "model.backbone.weights": "backbone.pth"}],
)  # fmt: skip
def test_trainable_norms_and_pretrained_frozen_bn_pass(tmp_path: Path, sets: dict[str, str]):
    check_norm_can_train(config(tmp_path, **sets), resume=False)
