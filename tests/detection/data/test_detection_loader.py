"""detection/data/loader.py: samples, bad images, collate (samplers: tests/engine)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from detection.data.build import aspect_groups
from detection.data.cleaning import DataWarning
from detection.data.loader import (
    BadSample,
    DetectionDataset,
    DetectionLoader,
    Sample,
    collate_detection,
)
from detection.data.transforms import TestTransform, TrainTransform
from detection.data.voc import load_voc
from detection.structures import ImageRecord
from engine.errors import UserError

TRANSFORM = TestTransform(32, 64, "RGB", [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


def _voc_records(voc_devkit: Path) -> list[ImageRecord]:
    with pytest.warns(DataWarning):
        return load_voc(str(voc_devkit / "VOC2007"), "trainval")


def test_dataset_sample_carries_scaled_targets_and_ignore(voc_devkit: Path) -> None:
    sample = DetectionDataset(_voc_records(voc_devkit), TRANSFORM)[0]
    assert isinstance(sample, Sample)
    assert tuple(sample.image.shape) == (32, 43, 3)  # 30x40 -> shorter side 32, uint8
    assert sample.image.dtype == np.uint8
    sy, sx = sample.scale
    assert (sy, sx) == (32 / 30, 43 / 40)
    expected = [[0, 0, 10 * sx, 20 * sy], [4 * sx, 5 * sy, 40 * sx, 30 * sy]]
    torch.testing.assert_close(sample.targets.boxes, torch.tensor(expected))
    assert sample.targets.ignore.tolist() == [False, True]
    assert sample.targets.labels.tolist() == sample.record.labels.tolist()


def _corrupt(voc_devkit: Path) -> list[ImageRecord]:
    """Records of trainval with 000002 missing and 000003 corrupt."""
    records = _voc_records(voc_devkit)
    (voc_devkit / "VOC2007/JPEGImages/000002.jpg").unlink()
    (voc_devkit / "VOC2007/JPEGImages/000003.jpg").write_bytes(b"\xff\xd8 truncated")
    return records


def _loader(records: list[ImageRecord], skip: bool, batch_size: int = 1) -> DetectionLoader:
    data = DataLoader(
        DetectionDataset(records, TRANSFORM), batch_size=batch_size, collate_fn=collate_detection
    )
    return DetectionLoader(data, skip, len(records))


def test_bad_images_are_skipped_with_one_warning_each(voc_devkit: Path) -> None:
    records = _corrupt(voc_devkit)
    loader = _loader(records, skip=True)
    with pytest.warns(DataWarning) as caught:
        for _ in range(2):  # a second pass warns no more
            assert [b.images.image_ids for b in loader] == [["000001"]]
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and loader.num_skipped == 2
    assert "000002.jpg: cannot read the image file" in messages[0]
    assert "(1 skipped so far)" in messages[0]
    assert "000003.jpg: truncated JPEG" in messages[1]  # JPEG start marker, no end marker
    assert "(2 skipped so far)" in messages[1]


def test_bad_image_is_a_one_line_error_without_skipping(voc_devkit: Path) -> None:
    loader = _loader(_corrupt(voc_devkit), skip=False, batch_size=3)
    with pytest.raises(UserError, match=r"000002\.jpg: cannot read.*skip_bad_images=true") as info:
        list(loader)
    assert "\n" not in str(info.value)


def test_all_images_bad_is_an_error(voc_devkit: Path) -> None:
    records = _corrupt(voc_devkit)[1:]
    with pytest.warns(DataWarning), pytest.raises(UserError, match="all 2 images"):
        list(_loader(records, skip=True))


def test_size_mismatch_is_a_bad_image(voc_devkit: Path) -> None:
    records = _voc_records(voc_devkit)
    cv2.imwrite(records[0].path, np.zeros((31, 40, 3), np.uint8))
    bad = DetectionDataset(records, TRANSFORM)[0]
    assert isinstance(bad, BadSample)
    assert bad.reason.endswith("000001.jpg: decoded size 40x31 differs from the annotated 40x30")


def _photo(path: Path) -> ImageRecord:
    """A smooth 1600x1200 JPEG with a bright box at (400, 300, 1200, 900)."""
    yy, xx = np.mgrid[:1200, :1600]
    image = np.stack([xx * 255 // 1600, yy * 255 // 1200, np.full_like(xx, 90)], -1)
    image[300:900, 400:1200] = 250
    cv2.imwrite(str(path), image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    box = np.array([[400, 300, 1200, 900]], np.float32)
    return ImageRecord(0, str(path), 1600, 1200, box, np.zeros(1, np.int64), np.zeros(1, bool))


def test_reduced_decode_keeps_scale_and_boxes_exact(tmp_path: Path) -> None:
    """1600x1200 -> 600 px: decoded at 1/2 (800x600), same size, scale and boxes as full."""
    record = _photo(tmp_path / "big.jpg")
    mean = [0.0, 0.0, 0.0]
    fast = TestTransform(600, 1000, "RGB", mean, [1.0] * 3, reduced_decode=True)
    full = TestTransform(600, 1000, "RGB", mean, [1.0] * 3, reduced_decode=False)
    assert fast.decode_reduction(1200, 1600) == 2 and full.decode_reduction(1200, 1600) == 1
    a, b = DetectionDataset([record], fast)[0], DetectionDataset([record], full)[0]
    assert isinstance(a, Sample) and isinstance(b, Sample)
    assert a.image.shape == b.image.shape == (600, 800, 3)
    assert a.scale == b.scale == (0.5, 0.5)
    assert a.targets.boxes.tolist() == b.targets.boxes.tolist() == [[200.0, 150.0, 600.0, 450.0]]
    # the pixels differ only by the decoder's filtering: DCT scaling against a bilinear shrink
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 2.0
    # training: sizes 300 (1/4 decode: 400x300) and 600 (1/2) from the same record
    train = TrainTransform([300, 600], 1000, 0.5, 0.0, "RGB", mean, [1.0] * 3, reduced_decode=True)
    for seed in range(6):
        sample = DetectionDataset([record], train)[(0, seed)]
        assert isinstance(sample, Sample)
        height = sample.image.shape[0]
        assert train.decode_reduction(1200, 1600, seed) == {300: 4, 600: 2}[height]
        assert sample.scale == (height / 1200, height / 1200)
        x1, y1, x2, y2 = sample.targets.boxes[0].tolist()
        width = sample.image.shape[1]
        if sample.flipped:
            x1, x2 = width - x2, width - x1
        assert [x1, y1, x2, y2] == [v * height / 1200 for v in (400, 300, 1200, 900)]


def test_reduced_decode_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    record = _photo(tmp_path / "big.jpg")
    record.height = 1300  # the annotation is wrong: 1/2 decode expects 800x650
    fast = TestTransform(600, 1000, "RGB", [0.0] * 3, [1.0] * 3, reduced_decode=True)
    bad = DetectionDataset([record], fast)[0]
    assert isinstance(bad, BadSample)
    assert bad.reason.endswith(
        "big.jpg: decoded size 800x600 differs from the annotated 1600x1300 "
        "(800x650 expected at 1/2 scale)"
    )


def test_collate_builds_a_detection_batch(voc_devkit: Path) -> None:
    dataset = DetectionDataset(_voc_records(voc_devkit), TRANSFORM)
    collated = collate_detection([dataset[0], dataset[1]], size_divisibility=32)
    assert collated.bad == [] and collated.batch is not None
    batch = collated.batch
    # 30x40 -> 32x43 and 16x24 -> 32x48; padded to 32x64
    assert tuple(batch.images.tensor.shape) == (2, 3, 32, 64)
    assert batch.images.image_sizes == [(32, 43), (32, 48)]
    assert batch.images.original_sizes == [(30, 40), (16, 24)]
    assert batch.images.image_ids == ["000001", "000002"]
    assert [len(t.boxes) for t in batch.targets] == [2, 1]
    assert [r.image_id for r in batch.records] == ["000001", "000002"]
    assert collate_detection([BadSample(dataset.records[0], "x")]).batch is None


def test_aspect_groups_put_portrait_apart() -> None:
    records = [ImageRecord(0, "", 40, 30), ImageRecord(1, "", 30, 40), ImageRecord(2, "", 5, 5)]
    assert aspect_groups(records) == [0, 1, 0]
