"""Box cleaning shared by the VOC and COCO readers: clip to the image, drop degenerate boxes.

Both readers feed every annotated box of a file through :class:`BoxCleaner`, which counts what
it changed and, once the whole split is read, emits one summary warning per kind of problem
(naming the first file where it happened) instead of one warning per box.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from engine.errors import DataWarning, UserError

# The largest image side an annotation may state: ~10x the largest photos in detection sets;
# above it a width is a typo or a hostile file (it would size buffers and boxes).
MAX_ANNOTATED_SIDE = 100_000


def check_annotated_size(width: int, height: int, where: str) -> None:
    """Refuse an image size of an annotation file above ``MAX_ANNOTATED_SIDE``.

    Raises:
        UserError: naming ``where`` and the size.
    """
    if max(width, height) > MAX_ANNOTATED_SIDE:
        raise UserError(
            f"{where}: image size {width} x {height} is beyond {MAX_ANNOTATED_SIDE} pixels a "
            f"side; expected the image's real size"
        )


@dataclass
class BoxCleaner:
    """Clips boxes to their image and drops those with no area, counting both.

    Attributes:
        source: what is being read (a split file or an annotation JSON), for the warnings.
        clipped: boxes that reached outside their image and were clipped.
        dropped: boxes whose width or height was <= 0 after clipping, dropped.
    """

    source: str
    clipped: int = 0
    dropped: int = 0
    first_clipped: str = ""
    first_dropped: str = ""

    def clean(self, boxes: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
        """Clip ``boxes`` to the image and return the mask of boxes to keep.

        Args:
            boxes: (G, 4) float32 xyxy in original pixels; clipped in place.
            width: image width in pixels.
            height: image height in pixels.
            where: the annotation file (and entry) the boxes come from, for the warnings.

        Returns:
            (G,) bool, False for degenerate boxes (width or height <= 0 after clipping).
        """
        limits = np.array([width, height, width, height], np.float32)
        outside = ((boxes < 0) | (boxes > limits)).any(axis=1)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        np.clip(boxes, 0, limits, out=boxes)
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        # a box both outside and degenerate counts as dropped only
        n_clipped = int((outside & keep).sum())
        n_dropped = int((~keep).sum())
        if n_clipped and not self.clipped:
            self.first_clipped = where
        if n_dropped and not self.dropped:
            self.first_dropped = where
        self.clipped += n_clipped
        self.dropped += n_dropped
        return keep

    def warn(self) -> None:
        """Emit one :class:`DataWarning` per kind of repair made (none if nothing changed)."""
        if self.clipped:
            warnings.warn(
                f"{self.source}: clipped {self.clipped} box(es) reaching outside their image "
                f"(first in {self.first_clipped})",
                DataWarning,
                stacklevel=3,
            )
        if self.dropped:
            warnings.warn(
                f"{self.source}: dropped {self.dropped} degenerate box(es) with width or height "
                f"<= 0 (first in {self.first_dropped})",
                DataWarning,
                stacklevel=3,
            )
