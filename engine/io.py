"""Files, written atomically and read with one-line errors.

Writes go to a temporary file in the destination's folder, are fsynced, renamed over the
final name, and the folder is fsynced too: a reader (or a crash at any moment) sees the old
file or the new one, never half of one. Reads turn a missing file, bad encoding or malformed
JSON into :class:`UserError` naming the file. JSON is written strict: a NaN or infinite
number (the AP of a class without test objects) is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol, TypeGuard

import torch

from engine.errors import UserError


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then make it ``path`` atomically.

    Returns:
        ``path`` as a Path.

    Raises:
        UserError: the folder cannot be created or written (read-only, full disk, a file in
            the way); the temp file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the group
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, RuntimeError) and not _is_write_failure(exc):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "write failed"
        raise UserError(f"{path}: cannot write ({reason}; the previous file is kept)") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_write_failure(exc: RuntimeError) -> bool:
    """torch.save reports a full disk as a RuntimeError from its zip writer."""
    text = str(exc)
    return "inline_container" in text or "unexpected pos" in text or "write" in text.lower()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented strict JSON (NaN / infinity as ``null``, one trailing
    newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in dicts, lists, tuples) replaced by None,
    so that ``json.dumps`` writes strict JSON that any reader accepts."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def encode_image(
    image: Any, suffix: str = ".jpg", quality: int | None = None, where: str = "image"
) -> bytes:
    """An RGB uint8 (H, W, 3) image encoded by OpenCV in the format of ``suffix``
    (``where``: what the error message names).

    Raises:
        UserError: OpenCV cannot encode it in that format.
    """
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if quality is not None else []
    try:
        ok, data = cv2.imencode(suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    except cv2.error:  # no encoder for that suffix
        ok = False
    if not ok:
        raise UserError(f"{where}: OpenCV cannot encode an image as {suffix!r}")
    return bytes(data.tobytes())


def atomic_write_image(
    path: str | os.PathLike[str], image: Any, quality: int | None = None
) -> Path:
    """Write an RGB uint8 (H, W, 3) image to ``path`` (format from its suffix) atomically;
    unlike ``cv2.imwrite``, a failed write (full disk, read-only folder) is a UserError."""
    return atomic_write_bytes(path, encode_image(image, Path(path).suffix, quality, str(path)))


def output_folder(path: str | os.PathLike[str], what: str) -> Path:
    """The folder ``path`` (``what``: the option naming it, e.g. ``--output``), created if
    missing and checked to be writable.

    Raises:
        UserError: ``path`` is a file, cannot be created, or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{what} {path}: cannot create the folder ({exc.strerror or exc})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: the folder is not writable")
    return path


class Figure(Protocol):
    """What :func:`atomic_write_png` needs of a figure (a matplotlib ``Figure``)."""

    def savefig(self, fname: Any, **kwargs: Any) -> Any: ...


def atomic_write_png(path: str | os.PathLike[str], figure: Figure, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically (never a torn PNG there)."""
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not possible on every platform: then a no-op)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """The UTF-8 text of ``path``.

    Raises:
        UserError: missing or unreadable file, or bytes that are not UTF-8.
    """
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: expected a {what}, found a folder") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_json(
    path: str | os.PathLike[str], what: str = "JSON file", allow_nan: bool = False
) -> Any:
    """The parsed JSON of ``path``; NaN / Infinity (not JSON) are refused unless
    ``allow_nan`` (for a caller that names the entry holding one itself).

    Raises:
        UserError: missing file, bad encoding or malformed JSON (with line and column).
    """
    text = read_text(path, what)
    try:
        return json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}: malformed JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def is_json_integer(value: object) -> TypeGuard[int]:
    """A JSON integer (``true`` parses as a Python int but is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_json_number(value: object) -> TypeGuard[int | float]:
    """A JSON integer or float (not ``true`` / ``false``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
