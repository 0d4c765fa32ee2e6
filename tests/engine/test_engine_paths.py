"""engine/paths.py: which names may become a path below a root, on hand-picked cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import UserError
from engine.paths import child_path, unsafe_name_reason


@pytest.mark.parametrize(
    ("name", "nested", "reason"),
    [
        ("000005", False, None),
        ("photo one.jpg", False, None),  # spaces inside are a file name's business
        ("a.b..c", False, None),
        ("VOC2007/000005.jpg", True, None),
        ("VOC2007/000005.jpg", False, "holds a '/'"),
        ("../x", False, "holds a '/'"),
        ("../x", True, "holds a '.' or '..' part"),
        ("a/./b", True, "holds a '.' or '..' part"),
        (".", False, "holds a '.' or '..' part"),
        ("..", True, "holds a '.' or '..' part"),
        ("/etc/passwd", True, "is an absolute path"),
        ("a\\b", True, "holds a backslash or a drive"),
        ("C:x", False, "holds a backslash or a drive"),
        ("a\x00b", False, "holds a control character"),
        ("a\nb", False, "holds a control character"),
        ("", False, "is empty or has leading/trailing spaces"),
        (" a", False, "is empty or has leading/trailing spaces"),
    ],
)
def test_unsafe_name_reason(name: str, nested: bool, reason: str | None) -> None:
    assert unsafe_name_reason(name, nested) == reason


def test_child_path_names_where_the_name_came_from(tmp_path: Path) -> None:
    assert child_path(tmp_path, "a/b.jpg", "x.json: images[0]", nested=True) == tmp_path / "a/b.jpg"
    with pytest.raises(UserError) as info:
        child_path(tmp_path, "../b", "test.txt:3")
    assert (
        str(info.value) == f"test.txt:3: '../b' holds a '/'; expected a file name inside {tmp_path}"
    )
