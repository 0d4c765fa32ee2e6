"""Multi-scale testing and flip: scale choice, max-out, mirroring, and whole-model identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from detection.config import Config
from detection.data.transforms import collate_images
from detection.modeling.augmented_inference import (
    View,
    adjacent_scales,
    mirror_boxes,
    mirror_images,
    pyramid_features,
)
from detection.modeling.box_ops import clip_boxes
from detection.modeling.build import build_model
from detection.modeling.roi_heads import ClassBoxes
from detection.predictor import Predictor
from detection.structures import ImageBatch


def test_adjacent_scales_bracket_the_target_or_take_the_end_pair() -> None:
    sides = torch.tensor(
        [
            [50.0, 100.0, 200.0, 400.0],  # crosses 224 between scales 2 and 3
            [300.0, 600.0, 1200.0, 2400.0],  # too big everywhere: the two smallest
            [10.0, 20.0, 40.0, 80.0],  # too small everywhere: the two largest
            [112.0, 224.0, 448.0, 896.0],  # exactly 224 at scale 1: the pair (112, 224]
        ]
    )
    low, high = adjacent_scales(sides, 224.0)
    assert low.tolist() == [2, 0, 2, 0] and high.tolist() == [3, 1, 3, 1]
    low, high = adjacent_scales(torch.tensor([[50.0], [500.0]]), 224.0)
    assert low.tolist() == [0, 0] and high.tolist() == [0, 0]


def test_mirroring_boxes_and_images() -> None:
    boxes = torch.tensor([[10.0, 5.0, 30.0, 20.0]])
    assert mirror_boxes(boxes, 100.0).tolist() == [[70.0, 5.0, 90.0, 20.0]]
    assert torch.equal(mirror_boxes(mirror_boxes(boxes, 100.0), 100.0), boxes)
    tensor = torch.zeros(2, 1, 2, 4)
    tensor[0, 0] = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    tensor[1, 0, :1, :2] = torch.tensor([1.0, 2.0])  # 1 x 2 image, the rest is padding
    batch = ImageBatch(
        tensor, [(2, 4), (1, 2)], [(2, 4), (1, 2)], [(1.0, 1.0)] * 2, [False] * 2, [0, 1]
    )
    mirrored = mirror_images(batch).tensor
    assert mirrored[0, 0].tolist() == [[4.0, 3.0, 2.0, 1.0], [8.0, 7.0, 6.0, 5.0]]
    assert mirrored[1, 0].tolist() == [[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]  # padding stays


class WidthPlusLevel:
    """A stand-in RoI head: a RoI's feature is its width in the view plus the view's value."""

    def box_features(self, maps: list[Tensor], boxes: list[Tensor], sizes: object) -> Tensor:
        rois = torch.cat(boxes)
        return (rois[:, 2:3] - rois[:, 0:1]) + maps[0].flatten()[0]


def test_pyramid_features_max_out_the_two_adjacent_scales() -> None:
    # main scale ratio 1; views at 0.5, 1 and 2; a 100 px square measures 50, 100, 200 px:
    # 224 lies above all but the last pair, so scales 1 and 2 score it: max(100 + 50, 200 - 150)
    views = [
        View([torch.full((1, 1, 1, 1), value)], [(10, 10)], [(ratio, ratio)])
        for ratio, value in ((0.5, 1000.0), (1.0, 50.0), (2.0, -150.0))
    ]
    square = [torch.tensor([[0.0, 0.0, 100.0, 100.0], [0.0, 0.0, 400.0, 400.0]])]
    features = pyramid_features(WidthPlusLevel(), views, square, 224.0)  # type: ignore[arg-type]
    # the 400 px square measures 200, 400, 800: too big everywhere, scales 0 and 1:
    # max(200 + 1000, 400 + 50)
    assert features.flatten().tolist() == [150.0, 1200.0]


def _config(**test: object) -> Config:
    cfg = Config()
    cfg.model.num_classes = 3
    cfg.model.backbone.name, cfg.model.backbone.base_width = "resnet18", 16
    cfg.model.backbone.norm, cfg.model.backbone.weights = "bn", ""
    cfg.model.anchors.sizes = [[16.0, 32.0, 64.0]]
    cfg.model.rpn.post_nms_topk_test = 30
    cfg.input.min_size_test, cfg.input.max_size_test = 96, 160
    cfg.test.score_thresh = 0.0  # random heads: keep every candidate
    for key, value in test.items():
        setattr(cfg.test, key, value)
    return cfg


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    model = build_model(_config())
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.mul_(50)  # spread the scores
    path = tmp_path_factory.mktemp("tta") / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    return str(path)


IMAGE = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)


def _detect(weights: str, **test: object) -> tuple[Tensor, Tensor]:
    detections = Predictor(_config(**test), weights)(IMAGE)
    return detections.boxes, detections.scores


def test_a_pyramid_of_the_test_scale_alone_changes_nothing(weights: str) -> None:
    boxes, scores = _detect(weights)
    for pyramid in ([96], [96, 96]):  # one view; or two identical views, max-out of equals
        same_boxes, same_scores = _detect(weights, pyramid_sizes=pyramid)
        torch.testing.assert_close(same_boxes, boxes)
        torch.testing.assert_close(same_scores, scores)


def test_flip_is_the_mean_of_the_plain_and_the_mirrored_pass(weights: str) -> None:
    flipped = Predictor(_config(flip=True), weights)
    batch = collate_images(*zip(flipped.transform(IMAGE)), [IMAGE.shape[:2]])  # type: ignore[misc]
    model, heads = flipped.model, flipped.model.roi_heads
    with torch.no_grad():
        detections = model(batch, detect=True).detections
        # the same by hand: both passes score the test scale's proposals
        features = model.extract_features(batch.tensor)
        proposals, _ = model.rpn(batch, [features[n] for n in model.rpn_features], None)
        rois, (size,) = [proposals[0].boxes], batch.image_sizes
        plain = heads.candidates([features["c4"]], rois, [size])[0]
        mirror_maps = [model.extract_features(mirror_images(batch).tensor)["c4"]]
        mirror = heads.candidates(mirror_maps, [mirror_boxes(rois[0], size[1])], [size])[0]
        back = ClassBoxes(mirror.scores, clip_boxes(mirror_boxes(mirror.boxes, size[1]), size))
        (expected,) = heads.rule.select([ClassBoxes.mean([plain, back])])
    assert detections is not None and len(expected) > 0
    torch.testing.assert_close(detections[0].boxes, expected.boxes)
    torch.testing.assert_close(detections[0].scores, expected.scores)


def test_every_switch_at_once_runs_end_to_end(weights: str) -> None:
    boxes, scores = _detect(
        weights, pyramid_sizes=[64, 96, 128], flip=True, box_refinement=True, box_voting=True
    )
    assert boxes.shape[1] == 4 and len(boxes) == len(scores) > 0
    assert (scores[:-1] >= scores[1:]).all()  # by decreasing score
