"""Fixtures shared by every test folder: the real raccoon photos, read from ../shared.

The photos are not part of the repository: they are datitran/raccoon_dataset's (MIT licence),
kept beside the checkout in ``../shared/data/raccoon`` (``images/raccoon-N.jpg``,
``annotations/raccoon-N.xml``). The tests that need them are skipped where that folder is
absent, and never write into it: they get a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

RACCOON = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "raccoon"
# the twelve photos the tests' numbers were worked out on: raccoon-31 holds two raccoons,
# raccoon-110 and raccoon-165 are portrait
RACCOON_IDS = tuple(f"raccoon-{n}" for n in (31, 39, 60, 84, 110, 131, 150, 151, 159, 165,
                                             166, 196))  # fmt: skip


@pytest.fixture(scope="session")
def raccoon_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LabelImg folder (``images/``, ``annotations/``, no split files) of the twelve photos,
    copied out of ../shared/data/raccoon once per session; do not write into it (copy it)."""
    wanted = [RACCOON / "images" / f"{i}.jpg" for i in RACCOON_IDS]
    wanted += [RACCOON / "annotations" / f"{i}.xml" for i in RACCOON_IDS]
    if not all(path.is_file() for path in wanted):
        pytest.skip(
            "../shared/data/raccoon is absent: real raccoon photos (datitran/raccoon_dataset, "
            "images/raccoon-N.jpg + annotations/raccoon-N.xml) are not part of the repository"
        )
    root = tmp_path_factory.mktemp("raccoon_photos")
    for path in wanted:
        (root / path.parent.name).mkdir(exist_ok=True)
        shutil.copyfile(path, root / path.parent.name / path.name)
    return root
