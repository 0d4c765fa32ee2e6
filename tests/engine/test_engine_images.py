"""engine/images.py: decoding (RGB, truncated JPEGs) and the bad-image policy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import DataWarning, UserError
from engine.images import BadImageError, BadImagePolicy, decode_image, reduced_size


def test_decode_image_gives_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.full((4, 6, 3), (0, 0, 255), np.uint8))  # BGR red
    image = decode_image(str(path))
    assert (
        image.shape == (4, 6, 3) and image.dtype == np.uint8 and image[0, 0].tolist() == [255, 0, 0]
    )


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_reduced_decode_has_the_ceil_size_of_every_format(tmp_path: Path, suffix: str) -> None:
    """1/r decode of 37x50: ceil sizes (libjpeg's DCT scaling; other formats area-shrunk)."""
    path = tmp_path / f"ramp{suffix}"
    ramp = np.broadcast_to(np.arange(50, dtype=np.uint8)[None, :, None] * 5, (37, 50, 3))
    cv2.imwrite(str(path), np.ascontiguousarray(ramp))
    assert reduced_size(37, 50, 4) == (10, 13)
    for reduce in (2, 4, 8):
        image = decode_image(str(path), reduce)
        assert image.shape == (*reduced_size(37, 50, reduce), 3) and image.dtype == np.uint8
        # the horizontal ramp survives: each column's value near 5 * its centre x in full pixels
        step = reduce if suffix == ".jpg" else 50 / image.shape[1]  # JPEG: blocks of r pixels
        centre = (np.arange(image.shape[1]) + 0.5) * step - 0.5
        assert np.abs(image[image.shape[0] // 2, :-1, 0] - 5 * centre[:-1]).max() < 12


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match=r"absent\.jpg: cannot read the image file"):
        decode_image(str(tmp_path / "absent.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG \xff\xd9")
    with pytest.raises(BadImageError, match=r"bad\.jpg: the image does not decode"):
        decode_image(str(tmp_path / "bad.jpg"))
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((16, 16, 3), 128, np.uint8))
    assert decode_image(str(good)).shape == (16, 16, 3)
    torn = tmp_path / "torn.jpg"
    torn.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(BadImageError, match=r"torn\.jpg: truncated JPEG"):
        decode_image(str(torn))
    assert issubclass(BadImageError, UserError)


def test_policy_warns_once_per_file_and_counts() -> None:
    policy = BadImagePolicy(skip=True, num_images=3)
    with pytest.warns(DataWarning) as caught:
        policy.report("a.jpg", "a.jpg: broken")
        policy.report("a.jpg", "a.jpg: broken")
        policy.report("b.jpg", "b.jpg: broken")
    assert [str(w.message) for w in caught] == [
        "skipping a bad image: a.jpg: broken (1 skipped so far)",
        "skipping a bad image: b.jpg: broken (2 skipped so far)",
    ]
    assert policy.num_skipped == 2


def test_policy_stops_when_not_skipping_or_all_are_bad() -> None:
    with pytest.raises(UserError, match=r"a\.jpg: broken \(set data.skip_bad_images=true"):
        BadImagePolicy(skip=False, num_images=5).report("a.jpg", "a.jpg: broken")
    policy = BadImagePolicy(skip=True, num_images=1)
    with pytest.warns(DataWarning), pytest.raises(UserError, match="all 1 images of the data"):
        policy.report("a.jpg", "a.jpg: broken")
