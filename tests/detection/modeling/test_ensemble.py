"""DetectorEnsemble (appendix B): the union of the members' proposals, scored by every
member's RoI head, probabilities and class boxes averaged, then the usual selection."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from detection.config import Config
from detection.modeling.build import build_ensemble, build_model, check_member_config
from detection.modeling.ensemble import DetectorEnsemble, union_proposals, without_repeats
from detection.modeling.faster_rcnn import FasterRCNN
from detection.modeling.roi_heads import ClassBoxes
from detection.structures import Detections, ImageBatch, Proposals, Targets
from engine.errors import UserError


def _detector(cfg: Config, seed: int) -> FasterRCNN:
    """A randomly initialised detector whose class scores are far from uniform."""
    torch.manual_seed(seed)
    model = build_model(cfg, load_backbone_weights=False)
    with torch.no_grad():
        model.roi_heads.predictor.cls_score.weight.mul_(100)
    return model.eval()


def _detect(model: torch.nn.Module, images: ImageBatch) -> list[Detections]:
    with torch.no_grad():
        detections = model(images, detect=True).detections
    assert detections is not None
    return detections


def _assert_same(a: list[Detections], b: list[Detections], exact: bool = True) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) > 0 and torch.equal(x.labels, y.labels)
        if exact:
            assert torch.equal(x.boxes, y.boxes) and torch.equal(x.scores, y.scores)
        else:
            torch.testing.assert_close(x.boxes, y.boxes, rtol=1e-5, atol=1e-4)
            torch.testing.assert_close(x.scores, y.scores, rtol=1e-5, atol=1e-6)


def test_mean_averages_scores_and_boxes_per_roi_and_class() -> None:
    a = ClassBoxes(torch.tensor([[0.2, 0.8], [0.5, 0.5]]), torch.zeros(2, 2, 4))
    b = ClassBoxes(torch.tensor([[0.6, 0.4], [0.1, 0.9]]), torch.full((2, 2, 4), 2.0))
    b.boxes[1, 1] = torch.tensor([10.0, 20.0, 30.0, 40.0])
    mean = ClassBoxes.mean([a, b])
    torch.testing.assert_close(mean.scores, torch.tensor([[0.4, 0.6], [0.3, 0.7]]))
    assert mean.boxes[0].tolist() == [[1.0] * 4, [1.0] * 4]
    assert mean.boxes[1, 1].tolist() == [5.0, 10.0, 15.0, 20.0]  # (0 + b) / 2


def _proposals(boxes: list[list[float]], logits: list[float]) -> Proposals:
    return Proposals(torch.tensor(boxes, dtype=torch.float32), torch.tensor(logits))


def test_union_of_proposals_nms_then_topk() -> None:
    first = [_proposals([[0, 0, 10, 10], [20, 20, 40, 40]], [3.0, 1.0])]
    # a near-copy of first's box 0 (IoU 0.81, suppressed by it) and a new box
    second = [_proposals([[1, 0, 10, 10], [50, 0, 60, 30]], [2.0, 2.5])]
    (rois,) = union_proposals([first, second], nms_thresh=0.7, topk=10)
    assert rois.tolist() == [[0, 0, 10, 10], [50, 0, 60, 30], [20, 20, 40, 40]]  # by logit
    (rois,) = union_proposals([first, second], nms_thresh=0.7, topk=2)
    assert rois.tolist() == [[0, 0, 10, 10], [50, 0, 60, 30]]
    (rois,) = union_proposals([first, second], nms_thresh=0.7, topk=None)  # the whole union
    assert rois.tolist() == [[0, 0, 10, 10], [20, 20, 40, 40], [1, 0, 10, 10], [50, 0, 60, 30]]


def test_a_box_an_earlier_member_proposed_is_dropped_even_with_zero_area() -> None:
    # NMS keeps both copies of a zero-area box (IoU 0 with itself); a member's own repeats stay
    first = [_proposals([[5, 5, 5, 9], [5, 5, 5, 9], [0, 0, 10, 10]], [4.0, 3.0, 1.0])]
    second = [_proposals([[5, 5, 5, 9], [30, 30, 40, 40]], [5.0, 2.0])]
    boxes, logits = without_repeats([first[0], second[0]])
    assert boxes.tolist() == [[5, 5, 5, 9], [5, 5, 5, 9], [0, 0, 10, 10], [30, 30, 40, 40]]
    assert logits.tolist() == [4.0, 3.0, 1.0, 2.0]
    (rois,) = union_proposals([first, second], nms_thresh=0.7, topk=10)
    assert rois.tolist() == [[5, 5, 5, 9], [5, 5, 5, 9], [30, 30, 40, 40], [0, 0, 10, 10]]


def test_one_members_proposals_are_untouched() -> None:
    # two boxes at IoU 0.81 (an FPN RPN's NMS is per level): no second NMS for one member
    only = [_proposals([[0, 0, 10, 10], [1, 0, 10, 10]], [3.0, 2.0])]
    (rois,) = union_proposals([only], nms_thresh=0.7, topk=1)
    assert rois.tolist() == [[0, 0, 10, 10], [1, 0, 10, 10]]


@pytest.mark.parametrize("arch", ["c4", "fpn"])
def test_an_ensemble_of_one_is_that_model_exactly(
    arch: str,
    small_config: Callable[..., Config],
    tiny_batch: tuple[ImageBatch, list[Targets]],
) -> None:
    cfg = small_config(arch)
    model = _detector(cfg, seed=0)
    images = tiny_batch[0]
    _assert_same(_detect(build_ensemble(cfg, [model]).eval(), images), _detect(model, images))


@pytest.mark.parametrize("flip", [False, True])
def test_an_ensemble_of_one_refines_boxes_like_that_model(
    flip: bool, small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    # with flip the member scores the RoIs on the mirrored images too, inside the ensemble
    cfg = small_config("c4")
    cfg.test.box_refinement, cfg.test.flip = True, flip
    model = _detector(cfg, seed=0)
    images = tiny_batch[0]
    _assert_same(_detect(build_ensemble(cfg, [model]).eval(), images), _detect(model, images))


@pytest.mark.parametrize("union", ["all", "nms"])
def test_the_same_weights_twice_equal_the_single_model(
    union: str, small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    cfg = small_config("c4")
    cfg.test.ensemble_proposals = union
    model = _detector(cfg, seed=0)
    twice = build_ensemble(cfg, [model, copy.deepcopy(model)]).eval()
    assert twice.proposals_per_image == (None if union == "all" else 50)  # post_nms_topk_test
    images = tiny_batch[0]
    # the union of identical proposals (and its NMS) is the same set; (p + p) / 2 = p
    _assert_same(_detect(twice, images), _detect(model, images), exact=False)


def test_mixed_architectures_average_and_the_order_does_not_matter(
    small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    cfg = small_config("c4")
    # nms ranks the RoIs by objectness whoever proposed them; the whole union lists them
    # member by member, and the many tied scores of random heads would then break differently
    cfg.test.ensemble_proposals = "nms"
    resnet, vgg = _detector(cfg, seed=0), _detector(small_config("vgg"), seed=1)
    images = tiny_batch[0]
    ab = _detect(build_ensemble(cfg, [resnet, vgg]).eval(), images)
    ba = _detect(build_ensemble(cfg, [vgg, resnet]).eval(), images)
    _assert_same(ab, ba, exact=False)
    single = _detect(resnet, images)
    assert any(not torch.equal(x.scores, y.scores) for x, y in zip(ab, single, strict=True))


def test_selection_follows_the_main_configs_test_settings(
    small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    cfg = small_config("c4")
    members = [_detector(cfg, seed=0), _detector(cfg, seed=1)]
    assert max(len(d) for d in _detect(members[0], tiny_batch[0])) > 3
    cfg.test.detections_per_image = 3
    ensemble = build_ensemble(cfg, members).eval()
    assert [len(d) for d in _detect(ensemble, tiny_batch[0])] == [3, 3]


def test_training_and_targets_are_refused(
    small_config: Callable[..., Config], tiny_batch: tuple[ImageBatch, list[Targets]]
) -> None:
    images, targets = tiny_batch
    ensemble = DetectorEnsemble([_detector(small_config("c4"), seed=0)])
    with pytest.raises(ValueError, match="inference only"):
        ensemble.train()(images)
    with pytest.raises(ValueError, match="inference only"):
        ensemble.eval()(images, targets)
    assert ensemble(images, detect=False).detections is None


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("input.min_size_test", 400, "input.min_size_test is 400 but the main config's is 600"),
        ("input.format", "RGB", "input.format is RGB but the main config's is BGR"),
        ("model.num_classes", 5, "model.num_classes is 5 but the main config's is 3"),
    ],
)
def test_members_that_are_fed_or_predict_differently_are_refused(
    small_config: Callable[..., Config], key: str, value: object, shown: str
) -> None:
    cfg, member = small_config("c4"), small_config("vgg")
    check_member_config(cfg, member, "vgg.yaml")  # another architecture is fine
    section, name = key.split(".")
    setattr(getattr(member, section), name, value)
    with pytest.raises(UserError) as error:
        check_member_config(cfg, member, "vgg.yaml")
    message = str(error.value)
    assert message.startswith(f"ensemble member vgg.yaml: {shown};") and "\n" not in message
