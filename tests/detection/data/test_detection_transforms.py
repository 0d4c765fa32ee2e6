"""detection/data/transforms.py: resize rule, alignment of boxes and pixels, exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detection.data.transforms import (
    Normalization,
    TestTransform,
    TrainTransform,
    collate_images,
    collate_uint8_images,
    decode_reduction,
    detections_to_original,
    normalize,
    postprocess_detections,
    resized_shape,
)
from detection.structures import Detections

IDENTITY = {"format": "RGB", "pixel_mean": [0.0, 0.0, 0.0], "pixel_std": [1.0, 1.0, 1.0]}


def _train(min_sizes: list[int], max_size: int = 1000, flip: float = 0.0, jitter: float = 0.0):
    return TrainTransform(min_sizes, max_size, flip, jitter, **IDENTITY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((375, 500), (600, 800)),  # s = 600 / 375 = 1.6
        ((500, 2000), (250, 1000)),  # 1.2 would make 2400 > 1000: s = 1000 / 2000
        ((333, 500), (600, 901)),  # s = 600 / 333; 500 * s = 900.9 -> 901
        ((600, 600), (600, 600)),
    ],
)
def test_resized_shape(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resized_shape(*shape, 600, 1000) == expected


def test_normalize_reorders_channels_and_scales() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[...] = (10, 20, 30)  # RGB
    bgr = normalize(image, "BGR", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert bgr.shape == (3, 2, 3) and bgr.dtype == torch.float32
    assert bgr[:, 0, 0].tolist() == [(30 - 1) / 2, (20 - 2) / 2, (10 - 3) / 2]
    rgb = normalize(image, "RGB", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert rgb[:, 1, 2].tolist() == [9.0, 18.0, 27.0]


def test_test_transform_records_per_axis_scale() -> None:
    transform = TestTransform(600, 1000, "BGR", [102.98, 115.95, 122.77], [1.0, 1.0, 1.0])
    tensor, (sy, sx) = transform(np.zeros((333, 500, 3), np.uint8))
    assert tensor.shape == (3, 600, 901)
    assert (sy, sx) == (600 / 333, 901 / 500)
    assert tensor[:, 0, 0].tolist() == pytest.approx([-102.98, -115.95, -122.77])
    sample = transform.transform_sample(
        np.zeros((333, 500, 3), np.uint8), np.array([[0, 0, 100, 333]], np.float32)
    )
    np.testing.assert_allclose(sample.boxes, [[0, 0, 100 * 901 / 500, 600]], rtol=1e-6)
    assert sample.flipped is False


def _box_image(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255  # pixels x1..x2-1: the continuous box (x1, y1, x2, y2)
    return image


def _pixel_box(image: np.ndarray) -> np.ndarray:
    """Extent of the pixels brighter than half (continuous xyxy)."""
    on = image[..., 0] > 127.5
    cols, rows = np.flatnonzero(on.any(axis=0)), np.flatnonzero(on.any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


@pytest.mark.parametrize("flip", [0.0, 1.0])
@pytest.mark.parametrize(
    ("shape", "box"), [((375, 500), (37, 101, 230, 290)), ((90, 60), (3, 4, 20, 60))]
)
def test_boxes_stay_on_their_pixels(
    flip: float, shape: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    image = _box_image(*shape, box)
    out = _train([600], 1000, flip).transform_sample(image, np.array([box], np.float32), seed=0)
    assert out.flipped is bool(flip)
    assert tuple(out.image.shape[:2]) == resized_shape(*shape, 600, 1000)
    assert _iou(out.boxes[0], _pixel_box(out.image)) > 0.95
    # and the inverse maps the transformed box back onto the original within 0.5 px
    det = Detections(torch.from_numpy(out.boxes), torch.ones(1), torch.zeros(1, dtype=torch.int64))
    back = detections_to_original(det, tuple(out.image.shape[:2]), shape, out.scale, out.flipped)
    np.testing.assert_allclose(back.boxes.numpy()[0], box, atol=0.5)


def test_flip_maps_x_to_width_minus_x() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    out = _train([100], 1000, 1.0).transform_sample(
        image, np.array([[10, 20, 50, 60]], np.float32), seed=1
    )
    np.testing.assert_allclose(out.boxes, [[150, 20, 190, 60]], atol=1e-4)


def test_inverse_is_exact_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    for height, width in [(375, 500), (333, 500), (480, 640), (1000, 200)]:
        xy = rng.uniform(0, [width, height], size=(20, 2))
        wh = rng.uniform(1, 100, size=(20, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [width, height])], 1).astype(np.float32)
        for seed in range(4):  # both flip states and both sizes occur
            out = _train([600, 800], 1000, 0.5).transform_sample(
                np.zeros((height, width, 3), np.uint8), boxes, seed
            )
            det = Detections(torch.from_numpy(out.boxes), torch.ones(20), torch.zeros(20))
            size = tuple(out.image.shape[:2])
            back = detections_to_original(det, size, (height, width), out.scale, out.flipped)
            np.testing.assert_allclose(back.boxes.numpy(), boxes, atol=1e-3)


def test_detections_are_clipped_to_the_original_image() -> None:
    det = Detections(torch.tensor([[-10.0, -4.0, 250.0, 90.0]]), torch.ones(1), torch.zeros(1))
    back = detections_to_original(det, (100, 200), (50, 100), (2.0, 2.0), False)
    assert back.boxes.tolist() == [[0.0, 0.0, 100.0, 45.0]]
    flipped = detections_to_original(det, (100, 200), (50, 100), (2.0, 2.0), True)
    # flip in the 200-px input: (200-250, -4, 200+10, 90) -> /2 -> clipped
    assert flipped.boxes.tolist() == [[0.0, 0.0, 100.0, 45.0]]
    det = Detections(torch.tensor([[20.0, 10.0, 60.0, 30.0]]), torch.ones(1), torch.zeros(1))
    assert detections_to_original(det, (100, 200), (50, 100), (2.0, 2.0), True).boxes.tolist() == [
        [70.0, 5.0, 90.0, 15.0]
    ]


def test_training_randomness_comes_from_the_seed() -> None:
    transform = _train([400, 500, 600], 1000, 0.5, jitter=0.4)
    image = np.random.default_rng(0).integers(0, 255, (75, 100, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 40]], np.float32)
    outs = [transform.transform_sample(image, boxes, seed) for seed in range(16)]
    again = transform.transform_sample(image, boxes, 3)
    assert np.array_equal(again.image, outs[3].image) and again.flipped == outs[3].flipped
    assert {o.flipped for o in outs} == {True, False}
    assert {o.image.shape[0] for o in outs} == {400, 500, 600}
    # flip and size choice are independent streams (one shared seed would tie them)
    pairs = {(o.flipped, o.image.shape[0]) for o in outs}
    assert len(pairs) >= 5
    # jitter changes the pixels, not the boxes
    plain = _train([400], 1000, 0.0).transform_sample(image, boxes, 0)
    jittered = _train([400], 1000, 0.0, jitter=0.4).transform_sample(image, boxes, 0)
    assert not np.array_equal(plain.image, jittered.image)
    np.testing.assert_allclose(plain.boxes, jittered.boxes)


def test_images_without_boxes() -> None:
    out = _train([64]).transform_sample(np.zeros((32, 48, 3), np.uint8), np.zeros((0, 4)), 0)
    assert out.boxes.shape == (0, 4) and tuple(out.image.shape) == (64, 96, 3)


def test_collate_pads_with_zeros_to_the_divisibility() -> None:
    a, b = torch.ones(3, 50, 70), torch.full((3, 64, 40), 2.0)
    batch = collate_images(
        [a, b], [(25, 35), (32, 20)], [(2.0, 2.0), (2.0, 2.0)], [False, True], ["x", 7]
    )
    assert tuple(batch.tensor.shape) == (2, 3, 64, 96)
    assert batch.tensor[0, :, :50, :70].eq(1).all() and batch.tensor[0, :, 50:].eq(0).all()
    assert batch.tensor[0, :, :, 70:].eq(0).all() and batch.tensor[1, :, :, 40:].eq(0).all()
    assert batch.image_sizes == [(50, 70), (64, 40)]
    assert batch.original_sizes == [(25, 35), (32, 20)]
    assert batch.flipped == [False, True] and batch.image_ids == ["x", 7]
    unpadded = collate_images([a], [(25, 35)], [(2.0, 2.0)], size_divisibility=0)
    assert tuple(unpadded.tensor.shape) == (1, 3, 50, 70) and unpadded.image_ids == [0]
    dets = [Detections(torch.tensor([[10.0, 10.0, 20.0, 20.0]]), torch.ones(1), torch.zeros(1))] * 2
    back = postprocess_detections(dets, batch)
    assert back[0].boxes.tolist() == [[5.0, 5.0, 10.0, 10.0]]
    assert back[1].boxes.tolist() == [[10.0, 5.0, 15.0, 10.0]]  # flipped in the 40-px input


def test_train_boxes_are_clipped_to_the_image_before_scaling() -> None:
    out = _train([100], 1000, 0.0).transform_sample(
        np.zeros((50, 100, 3), np.uint8), np.array([[-10, 5, 120, 60]], np.float32), seed=0
    )
    assert out.scale == (2.0, 2.0)
    assert out.boxes.tolist() == [[0.0, 10.0, 200.0, 100.0]]


def test_uint8_collate_normalises_into_the_padded_batch() -> None:
    """Same tensor as normalising each image, then padding (BGR order, zero padding)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(50, 70, 3), (64, 40, 3)]]
    norm = Normalization("BGR", (103.53, 116.28, 123.675), (57.375, 57.12, 58.395))
    sizes, scales = [(25, 35), (32, 20)], [(2.0, 2.0), (2.0, 2.0)]
    batch = collate_uint8_images(images, norm, sizes, scales, [False, True], ["x", 7])
    expected = collate_images([norm(image) for image in images], sizes, scales, [False, True])
    assert tuple(batch.tensor.shape) == (2, 3, 64, 96)
    assert torch.equal(batch.tensor, expected.tensor)
    assert batch.tensor[0, :, 50:].eq(0).all() and batch.tensor[1, :, :, 40:].eq(0).all()
    assert batch.image_sizes == [(50, 70), (64, 40)] and batch.image_ids == ["x", 7]
    assert batch.flipped == [False, True] and batch.scales == scales


@pytest.mark.parametrize(
    ("original", "target", "expected"),
    [
        ((1200, 1600), (600, 800), 2),  # exactly 2x: the 1/2 decode is the target
        ((1201, 1599), (600, 800), 2),  # ceil(1201 / 2) = 601, ceil(1599 / 2) = 800
        ((1199, 1600), (600, 800), 2),  # ceil(1199 / 2) = 600
        ((1180, 1600), (600, 813), 1),  # 590 < 600: shrinking by less than 2x
        ((2400, 3200), (300, 400), 8),
        ((2400, 3200), (301, 401), 4),
        ((375, 500), (600, 800), 1),  # an upscale
    ],
)
def test_decode_reduction_never_goes_below_the_target(
    original: tuple[int, int], target: tuple[int, int], expected: int
) -> None:
    assert decode_reduction(original, target) == expected
