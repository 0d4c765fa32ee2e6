"""Draws docs/raccoon_detections.jpg from `resdet infer` output; run from the checkout:

    resdet infer --config RUN/config.yaml --weights RUN/model_final.pth \\
        --input data/raccoon_test --output drawn/raccoon --score-thresh 0.5
    python docs/raccoon_figure.py drawn/raccoon

(data/raccoon_test: the first test photos of data/raccoon/ImageSets/Main/test.txt.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

TILE = 300  # height of each photo in the montage


def montage(folder: Path, columns: int = 4, count: int = 8) -> np.ndarray:
    """The first ``count`` drawn photos, each scaled to TILE px high, in rows of ``columns``."""
    images = [cv2.imread(str(p)) for p in sorted(folder.glob("*.jpg"))[:count]]
    tiles = [cv2.resize(im, (round(im.shape[1] * TILE / im.shape[0]), TILE)) for im in images]
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    width = max(sum(t.shape[1] for t in row) for row in rows)
    canvas = [np.hstack([*row, np.full((TILE, width - sum(t.shape[1] for t in row), 3), 255,
                                       np.uint8)]) for row in rows]  # fmt: skip
    return np.vstack(canvas)


if __name__ == "__main__":
    out = Path("docs/raccoon_detections.jpg")
    cv2.imwrite(str(out), montage(Path(sys.argv[1])), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(out)
