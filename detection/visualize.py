"""Drawing detections on images with OpenCV (for `resdet infer` and the demo)."""

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
    canvas = np.ascontiguousarray(image.copy())
    keep = (detections.scores >= score_thresh).nonzero().flatten().tolist()
    keep.sort(key=lambda i: float(detections.scores[i]))
    thickness = max(1, round(max(image.shape[:2]) / 400))
    scale = max(0.35, max(image.shape[:2]) / 1200)
    for i in keep:
        x1, y1, x2, y2 = (round(float(v)) for v in detections.boxes[i])
        label = int(detections.labels[i])
        color = class_color(label)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        name = class_names[label] if label < len(class_names) else str(label)
        caption = f"{name} {float(detections.scores[i]):.2f}"
        (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(
            canvas, caption, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
            (0, 0, 0), 1, cv2.LINE_AA,
        )  # fmt: skip
    return canvas
