"""Image files: decoding with OpenCV, and the policy for files that do not decode.

Both tasks read images the same way: :func:`decode_image` gives RGB uint8 or raises
:class:`BadImageError` (missing, unreadable, truncated JPEG, not an image); asked for a
reduction it decodes at 1/2, 1/4 or 1/8 scale (:func:`reduced_size`), which for a JPEG is
libjpeg's DCT scaling and several times faster than a full decode. Workers do not
raise: they hand the path and reason back, and the training process applies
:class:`BadImagePolicy` (``data.skip_bad_images``): warn once per file and go on, or stop on
the first; and stop when every image of the data set turned out bad.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from engine.errors import DataWarning, UserError


class BadImageError(UserError):
    """An image file that is missing, unreadable or corrupt; the message names the file."""


REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduced_size(height: int, width: int, reduce: int) -> tuple[int, int]:
    """(h, w) of an image decoded at 1/``reduce`` scale: ``ceil(H / r), ceil(W / r)``."""
    return -(-height // reduce), -(-width // reduce)


def decode_image(path: str, reduce: int = 1) -> np.ndarray:
    """Read an image file into (H, W, 3) uint8 RGB, or at 1/``reduce`` scale.

    Args:
        path: the image file.
        reduce: 1, 2, 4 or 8; the result is :func:`reduced_size` (H, W, reduce). A JPEG is
            decoded at that scale (DCT scaling); other formats decode at full size and are
            shrunk with pixel-area averaging.

    Raises:
        BadImageError: unreadable file, truncated JPEG (no end-of-image marker), or data
            OpenCV cannot decode.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read the image file ({exc.strerror or exc})") from None
    # JPEG: 0xFFD9 can only appear as the end marker (0xFF bytes in the data are stuffed);
    # OpenCV decodes a truncated JPEG into a partly grey image without a word
    is_jpeg = data[:2].tobytes() == b"\xff\xd8"
    if is_jpeg and b"\xff\xd9" not in data[-4096:].tobytes():
        raise BadImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    flag = REDUCED_FLAGS[reduce] if is_jpeg else cv2.IMREAD_COLOR
    image = cv2.imdecode(data, flag) if data.size else None
    if image is None:
        raise BadImageError(f"{path}: the image does not decode (corrupt or not an image)")
    if reduce > 1 and not is_jpeg:
        height, width = reduced_size(image.shape[0], image.shape[1], reduce)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class BadImagePolicy:
    """What happens to an image that could not be used (``data.skip_bad_images``).

    Args:
        skip: warn once per file and go on; False raises on the first one.
        num_images: images in the data set; when that many distinct files were bad, stop.
    """

    def __init__(self, skip: bool, num_images: int) -> None:
        self.skip = skip
        self.num_images = num_images
        self.skipped: dict[str, str] = {}  # path -> reason, each bad file once

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def report(self, path: str, reason: str) -> None:
        """Apply the policy to one bad file; ``reason`` is a one-line message naming it.

        Raises:
            UserError: skipping is off, or every image of the data set is bad.
        """
        if not self.skip:
            raise UserError(f"{reason} (set data.skip_bad_images=true to skip such images)")
        if path in self.skipped:
            return
        self.skipped[path] = reason
        warnings.warn(
            f"skipping a bad image: {reason} ({self.num_skipped} skipped so far)",
            DataWarning,
            stacklevel=3,
        )
        if self.num_skipped >= self.num_images:
            raise UserError(f"all {self.num_images} images of the data set are bad ({reason})")
