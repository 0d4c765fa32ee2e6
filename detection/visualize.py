"""Drawing boxes on images with OpenCV: detections (`resdet infer`) and ground truth
(`resdet browse`)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detection.structures import Detections


def class_color(label: int) -> tuple[int, int, int]:
    """A stable, saturated RGB colour per class (golden-ratio hue steps)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_detections(
    image: np.ndarray, detections: Detections, class_names: Sequence[str], score_thresh: float
) -> np.ndarray:
    """Boxes with "class score" captions on a copy of an RGB uint8 (H, W, 3) image.

    Detections below ``score_thresh`` are not drawn; the highest scores are drawn last (on top).
    """
    keep = (detections.scores >= score_thresh).nonzero().flatten().tolist()
    keep.sort(key=lambda i: float(detections.scores[i]))
    labels = [int(detections.labels[i]) for i in keep]
    captions = [f"{_name(class_names, label)} {float(detections.scores[i]):.2f}"
                for i, label in zip(keep, labels)]  # fmt: skip
    return draw_boxes(image, detections.boxes[keep].numpy(), labels, captions)


def draw_ground_truth(
    image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
    class_names: Sequence[str],
) -> np.ndarray:  # fmt: skip
    """Annotated boxes (an image record's, original pixels) with their class names; boxes
    marked difficult / crowd say so."""
    captions = [_name(class_names, int(label)) + (" (ignored)" if flag else "")
                for label, flag in zip(labels, ignore)]  # fmt: skip
    return draw_boxes(image, boxes, [int(v) for v in labels], captions)


def draw_boxes(
    image: np.ndarray, boxes: np.ndarray, labels: Sequence[int], captions: Sequence[str]
) -> np.ndarray:
    """Boxes ((N, 4) xyxy pixels), coloured by label, captioned, on a copy of ``image``."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(image.shape[:2]) / 400))
    scale = max(0.35, max(image.shape[:2]) / 1200)
    taken: list[tuple[int, int, int, int]] = []  # caption boxes drawn so far
    for box, label, caption in zip(boxes, labels, captions):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        color = class_color(label)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        left, top = caption_place((x1, y1), (tw + 2, th + base + 2), taken, image.shape[:2])
        cv2.rectangle(canvas, (left, top), (left + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(
            canvas, caption, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (0, 0, 0), 1, cv2.LINE_AA,
        )  # fmt: skip
    return canvas


def caption_place(
    corner: tuple[int, int], size: tuple[int, int], taken: list[tuple[int, int, int, int]],
    image_hw: tuple[int, int],
) -> tuple[int, int]:  # fmt: skip
    """Where a caption of ``size`` (w, h) goes: above the box's top-left ``corner``, else
    stepped down by its own height until it overlaps no caption in ``taken`` (appended)."""
    (x, y), (w, h) = corner, size
    left = min(max(x, 0), max(image_hw[1] - w, 0))
    top = max(y - h, 0)
    for _ in range(len(taken) + 1):
        if not any(left < x2 and top < y2 and left + w > x1 and top + h > y1
                   for x1, y1, x2, y2 in taken):  # fmt: skip
            break
        top = min(top + h, max(image_hw[0] - h, 0))
    taken.append((left, top, left + w, top + h))
    return left, top


def _name(class_names: Sequence[str], label: int) -> str:
    return class_names[label] if label < len(class_names) else str(label)
