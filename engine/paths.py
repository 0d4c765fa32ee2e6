"""Names read from data files that become paths: they must stay inside their root.

An id in a split file, a file name in an annotation file or a class name that names a
results file is data, not a path the user chose; ``../../outside/evil`` or ``/etc/passwd``
there must not make a reader open, or a writer create, a file outside the folder it was
meant for. :func:`child_path` is the one check every such name goes through.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from engine.errors import UserError


def unsafe_name_reason(name: str, nested: bool = False) -> str | None:
    """Why ``name`` cannot be a path below a root (None when it can).

    Args:
        name: a relative name, e.g. ``"000005"`` or, with ``nested``, ``"VOC2007/000005"``.
        nested: allow ``/`` between plain parts (never ``..``, ``.`` or an absolute path).
    """
    if not name or name.strip() != name:
        return "is empty or has leading/trailing spaces"
    if "\x00" in name or any(ord(c) < 32 for c in name):
        return "holds a control character"
    if "\\" in name or PureWindowsPath(name).drive:
        return "holds a backslash or a drive"
    parts = PurePosixPath(name).parts
    if name.startswith("/"):
        return "is an absolute path"
    if name in (".", ".."):  # no parts at all for "." (PurePosixPath drops it)
        return "holds a '.' or '..' part"
    if not nested and len(parts) != 1:
        return "holds a '/'"
    if any(part in (".", "..") for part in name.split("/")):
        return "holds a '.' or '..' part"
    return None


def child_path(root: str | os.PathLike[str], name: str, where: str, nested: bool = False) -> Path:
    """``root / name``, refused when ``name`` would leave ``root``.

    Args:
        root: the folder the name is relative to.
        name: the name as read from a data file.
        where: the file and line (or key) it came from, for the message.
        nested: ``name`` may hold sub-folders (``a/b.jpg``); never ``..``.

    Raises:
        UserError: naming ``where``, the name and why it cannot be a path below ``root``.
    """
    reason = unsafe_name_reason(name, nested)
    if reason is not None:
        raise UserError(f"{where}: {name!r} {reason}; expected a file name inside {root}")
    return Path(root) / name
