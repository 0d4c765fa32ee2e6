"""Generate docs/CONFIG.md from the config dataclasses and their per-field comments.

Run ``python -m tools.config_docs > docs/CONFIG.md`` (``make docs``); a test checks that the
committed file is current, so the reference cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from typing import Any

from backbones.pretrain.config import PretrainConfig
from detection.config import Config


def field_comments(cls: type) -> dict[str, str]:
    """Map each field of a dataclass to the ``#`` comment written beside it in the source.

    A field spanning several lines may carry its comment on any of them (the first wins).
    Fields a dataclass inherits (e.g. engine's run-level keys) carry their base's comment.
    """
    found: dict[str, str] = {}
    for base in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        found.update(_own_field_comments(base))
    return found


def _own_field_comments(cls: type) -> dict[str, str]:
    lines, _ = inspect.getsourcelines(cls)
    source = "".join(lines)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if not text.startswith("fmt:") and not text.startswith("type:"):
                comments.setdefault(tok.start[0], text)
    tree = ast.parse(inspect.cleandoc(source) if source[0] == " " else source)
    found: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            found[node.target.id] = next((comments[i] for i in span if i in comments), "")
    return found


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return f"list[{_type_name(typing.get_args(kind)[0])}]"
    return getattr(kind, "__name__", str(kind))


def rows(cfg: Any, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every leaf of a config instance, depth first."""
    out: list[tuple[str, str, str, str]] = []
    comments = field_comments(type(cfg))
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += rows(value, f"{prefix}{f.name}.")
            continue
        meaning = comments.get(f.name, "")
        choices = f.metadata.get("choices")
        if choices:
            meaning += f" (one of: {', '.join(choices)})"
        meaning += _range(f.metadata)
        default = "`" + repr(value).replace("'", '"') + "`" if value != "" else '`""`'
        out.append((prefix + f.name, _type_name(hints[f.name]), default, meaning))
    return out


def _range(metadata: Any) -> str:
    """`` (0 to 1)`` / `` (at least 1)`` for a field with ``between`` / ``at_least`` metadata."""
    low, high = metadata.get("min"), metadata.get("max")
    if high is not None:
        return f" (from {low:g} to {high:g})"
    return f" (at least {low:g})" if low is not None else ""


def render() -> str:
    parts = [
        "# Configuration reference",
        "",
        "Generated from the dataclasses in `detection/config.py` by `make docs`",
        "(`python -m tools.config_docs`); do not edit by hand. A test fails when it is stale.",
        "",
        "A config file lists only what it changes from these defaults and may name one `base:`",
        "file (relative to itself; a base file has no base). Any key can be overridden on the",
        "command line with `--set dotted.key=value`; lists as `a,b,c` or `[a, b, c]`.",
        "Unknown keys, wrong types and values outside the listed choices or ranges are errors",
        "(exit 2). `trust_weights` is set only by the `--trust-weights` flag of the commands",
        "that read weights: a file may hold it only as false, and `--set` cannot set it.",
        "",
    ]
    for title, cls in [
        ("Detection runs: `resdet train / eval / infer`", Config),
        ("Classification runs: `resdet pretrain`", PretrainConfig),
    ]:
        parts += [f"## {title}", "", "| key | type | default | meaning |", "|" + " --- |" * 4]
        for key, kind, default, meaning in rows(cls()):
            parts.append(f"| `{key}` | {kind} | {default} | {meaning} |")
        parts.append("")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
