"""engine/images.py: decoding (RGB, truncated JPEGs) and the bad-image policy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.errors import DataWarning, UserError
from engine.images import BadImageError, BadImagePolicy, decode_image


def test_decode_image_gives_rgb(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), np.full((4, 6, 3), (0, 0, 255), np.uint8))  # BGR red
    image = decode_image(str(path))
    assert (
        image.shape == (4, 6, 3) and image.dtype == np.uint8 and image[0, 0].tolist() == [255, 0, 0]
    )


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
