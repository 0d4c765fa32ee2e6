"""detection/visualize.py: captions that would overlap are stepped apart."""

from __future__ import annotations

import numpy as np
import torch

from detection.structures import Detections
from detection.visualize import caption_place, draw_detections


def test_a_second_caption_at_the_same_corner_moves_down() -> None:
    taken: list[tuple[int, int, int, int]] = []
    assert caption_place((10, 30), (40, 12), taken, (100, 100)) == (10, 18)  # above the box
    assert caption_place((12, 30), (40, 12), taken, (100, 100)) == (12, 30)  # one step down
    assert caption_place((60, 30), (40, 12), taken, (100, 100)) == (60, 18)  # free: stays
    assert caption_place((95, 30), (40, 12), taken, (100, 100)) == (60, 30)  # inside, stepped
    assert len(taken) == 4


def test_two_detections_on_one_corner_both_show_their_caption() -> None:
    image = np.zeros((80, 120, 3), np.uint8)
    boxes = torch.tensor([[10.0, 30.0, 60.0, 70.0], [10.0, 30.0, 50.0, 60.0]])
    dets = Detections(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    drawn = draw_detections(image, dets, ["cat", "dog"], 0.5)
    rows = np.flatnonzero(drawn[:30].any(axis=(1, 2)))  # caption fill above the boxes' top
    assert rows.size and rows.min() < 30
    assert drawn[30:45, 10:40].any()  # the second caption, stepped down inside the box
