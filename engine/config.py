"""Configs: YAML files and ``--set`` overrides filling a tree of typed dataclasses.

The machinery every task's schema uses, plus the sections both tasks share (``SolverConfig``
and the run-level keys of ``RunConfig``). A schema is a dataclass tree with one comment per
field (docs/CONFIG.md is generated from those comments by ``tools.config_docs``); a field
with a fixed set of values says so with ``field(metadata=choices(...))``, which also checks
every item of a list. An experiment file lists only what it changes and may name one
``base:`` file (relative to itself), which may have a base of its own (no cycles). Everything
is checked at load: an unknown key, a value of the wrong type or outside its choices, a
missing file or malformed YAML raises :class:`UserError` with one line naming the file and
key (and, for a typo, the nearest valid key). A number outside its range (``at_least``,
``between``) is refused the same way. A key marked ``command_line(flag)`` (``trust_weights``)
is set only from that flag of the person running the command: a file may hold it only at its
default (a run's saved config.yaml writes the default), and ``--set`` refuses it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from engine.errors import UserError
from engine.io import atomic_write_text, read_text

MAX_IMAGE_SIDE = 10000  # the largest image side (pixels) a size key may ask for


def choices(*values: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: the allowed values of a str field (or of each item of a list)."""
    return {"choices": values}


def at_least(low: float, nonempty: bool = False) -> dict[str, Any]:
    """Field metadata: the smallest allowed number (of each item of a list, which must not be
    empty with ``nonempty``); ``at_least(0)`` for periods where 0 means off."""
    return {"min": low, "nonempty": nonempty}


def between(low: float, high: float, nonempty: bool = False) -> dict[str, Any]:
    """Field metadata: the closed range ``[low, high]`` of a number (of each item of a list,
    which must not be empty with ``nonempty``); ``between(0, 1)`` for fractions and IoUs."""
    return {"min": low, "max": high, "nonempty": nonempty}


def command_line(flag: str) -> dict[str, str]:
    """Field metadata: the key is set only by the command-line ``flag`` of the person running
    the command (a file may hold it at its default only; ``--set`` refuses it), for settings
    that must not travel in a shared run folder (``trust_weights``)."""
    return {"command_line": flag}


# ----------------------------------------------------------------------------- shared sections
@dataclass
class SolverConfig:
    base_lr: float = field(  # learning rate for the global batch `ims_per_batch`
        default=0.02, metadata=at_least(0)
    )
    max_iter: int = field(default=90000, metadata=at_least(0))  # training iterations
    ims_per_batch: int = field(  # global batch size (all processes together), as in Detectron2
        default=16, metadata=at_least(1)
    )
    momentum: float = field(default=0.9, metadata=between(0, 1))  # SGD momentum
    weight_decay: float = field(default=0.0001, metadata=at_least(0))  # L2 weight decay
    weight_decay_norm: float = field(  # weight decay on normalisation parameters
        default=0.0, metadata=at_least(0)
    )
    weight_decay_bias: float = field(  # weight decay on biases
        default=0.0001, metadata=at_least(0)
    )
    steps: list[int] = field(  # iterations where lr *= gamma
        default_factory=lambda: [60000, 80000], metadata=at_least(0)
    )
    gamma: float = field(default=0.1, metadata=at_least(0))  # lr decay factor at each step
    warmup_iters: int = field(default=1000, metadata=at_least(0))  # iterations of warm-up
    warmup_factor: float = field(  # lr multiplier at the start of warm-up
        default=0.001, metadata=between(0, 1)
    )
    warmup_method: str = field(  # linear ramp, constant factor, or constant until error is low
        default="linear", metadata=choices("linear", "constant", "until_error")
    )
    warmup_error: float = field(  # until_error: leave warm-up once the training error is below this
        default=0.8, metadata=between(0, 1)
    )
    clip_grad_norm: float = field(  # clip the global gradient norm to this value; 0 = off
        default=0.0, metadata=at_least(0)
    )
    checkpoint_period: int = field(  # iterations between checkpoints (and one at the end); 0 off
        default=5000, metadata=at_least(0)
    )
    amp: bool = False  # mixed precision: CUDA, or bf16 on a CPU with native bf16 (else fp32)
    amp_dtype: str = field(default="bf16", metadata=choices("bf16", "fp16"))  # AMP dtype
    on_nonfinite: str = field(  # a NaN/inf loss stops the run, or skips the batch
        default="stop", metadata=choices("stop", "skip")
    )


@dataclass
class RunConfig:
    """The run-level keys every task's root config has (tasks subclass it)."""

    output_dir: str = "output"  # where config.yaml, checkpoints, metrics and results go
    seed: int = 0  # seed for Python, NumPy and torch (each process adds its rank)
    device: str = field(  # auto: CUDA if present
        default="auto", metadata=choices("auto", "cpu", "cuda")
    )
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    log_period: int = field(default=20, metadata=at_least(1))  # iterations between log lines
    tensorboard: bool = False  # also write TensorBoard events (needs the `tb` extra)
    trust_weights: bool = field(  # --trust-weights only (files hold false): unpickle weights fully
        default=False, metadata=command_line("--trust-weights")
    )


# ------------------------------------------------------------------------------- the loader
C = TypeVar("C")


def load_config(
    cls: type[C], path: str | os.PathLike[str] | None, overrides: Sequence[str] = ()
) -> C:
    """Load a YAML config (and its chain of ``base:`` files) and apply ``--set`` overrides.

    Args:
        cls: the root dataclass of a task's schema (e.g. detection's Config).
        path: YAML file, or None for the defaults.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML and coerced.

    Raises:
        UserError: unknown key, wrong type, bad choice, missing file or malformed YAML.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        tree = _read_with_bases(Path(path), [])
    cfg = cls()
    _fill(cfg, tree, source, prefix="")
    for item in overrides:
        _apply_override(cfg, item)
    return cfg


def _read_with_bases(path: Path, chain: list[Path]) -> dict[str, Any]:
    """``path``'s tree merged over its ``base:`` (recursively); ``chain``: the files below."""
    if path.resolve() in chain:
        raise UserError(f"{chain[-1]}: its base {path} is already in the chain (a cycle)")
    tree = read_yaml(path)
    base = tree.pop("base", None)
    if base is None:
        return tree
    if not isinstance(base, str):
        raise UserError(f"{path}: key 'base' must be a file path, got {base!r}")
    return _merge(_read_with_bases(path.parent / base, [*chain, path.resolve()]), tree)


def save_config(cfg: Any, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML, atomically (temp file, fsync, rename); a
    command-line-only key is written at its default (the file must not grant it)."""
    text = yaml.safe_dump(_saved_tree(cfg), sort_keys=False, default_flow_style=None)
    atomic_write_text(Path(path), text)


def _saved_tree(node: Any) -> dict[str, Any]:
    """``dataclasses.asdict(node)`` with every ``command_line`` key at its default."""
    tree: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            tree[f.name] = _saved_tree(value)
        elif "command_line" in f.metadata:
            tree[f.name] = f.default
        else:
            tree[f.name] = copy.deepcopy(value)
    return tree


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file (no ``base:`` followed, no schema applied).

    Raises:
        UserError: missing file, malformed YAML, or not a mapping (one line naming the file).
    """
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.load(read_text(path, "config file"), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child values replace base values; nested mappings merge key by key."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nearest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(valid)})"


def _fill(node: Any, tree: Any, source: str, prefix: str) -> None:
    """Set the fields of the dataclass instance ``node`` from the mapping ``tree``, checked."""
    if not isinstance(tree, dict):
        raise UserError(f"{source}: key '{prefix.rstrip('.')}' must be a mapping, got {tree!r}")
    types_ = _field_types(type(node))
    valid = [prefix + k for k in types_]
    for key in tree:
        if key not in types_:
            hint = _nearest(prefix + str(key), valid)
            raise UserError(f"{source}: unknown key '{prefix}{key}'{hint}")
    for f in dataclasses.fields(node):
        if f.name not in tree:
            continue
        kind, key = types_[f.name], prefix + f.name
        if dataclasses.is_dataclass(kind):
            # a section starts from its parent's default (e.g. data.test.splits = ["test"])
            _fill(getattr(node, f.name), tree[f.name], source, key + ".")
            continue
        value = _coerce(tree[f.name], kind, f"{source}: key '{key}'", f.metadata)
        if "command_line" in f.metadata and value != f.default:
            raise UserError(f"{source}: key '{key}' is not read from files: {f.name} is a "
                            f"command-line flag: {f.metadata['command_line']}")  # fmt: skip
        setattr(node, f.name, value)


def _coerce(value: Any, kind: Any, where: str, metadata: Any = None) -> Any:
    """Check ``value`` against the annotation ``kind`` (str, int, float, bool, list[...])."""
    origin = typing.get_origin(kind)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UserError(f"{where} expects a list, got {value!r}")
        if not value and (metadata or {}).get("nonempty"):
            raise UserError(f"{where} expects a non-empty list")
        (item_kind,) = typing.get_args(kind)
        return [_coerce(v, item_kind, where, metadata) for v in value]  # checks apply per item
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported config annotation {kind}")
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if not ok:
        raise UserError(f"{where} expects {kind.__name__}, got {value!r}")
    choices = (metadata or {}).get("choices")
    if choices and value not in choices:
        raise UserError(f"{where} must be one of {', '.join(choices)}, got {value!r}")
    _check_range(value, where, metadata or {})
    return float(value) if kind is float else value


def _check_range(value: Any, where: str, metadata: Any) -> None:
    """``at_least`` / ``between`` metadata: the comparisons also refuse NaN."""
    low, high = metadata.get("min"), metadata.get("max")
    if high is not None and not low <= value <= high:
        raise UserError(f"{where} must be between {low} and {high}, got {value!r}")
    if low is not None and not value >= low:
        raise UserError(f"{where} must be at least {low}, got {value!r}")


def _apply_override(cfg: Any, item: str) -> None:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected dotted.key=value")
    dotted, raw = item.split("=", 1)
    parts = dotted.strip().split(".")
    node = cfg
    for i, part in enumerate(parts):
        types_ = _field_types(type(node))
        if part not in types_:
            prefix = ".".join(parts[:i])
            valid = [f"{prefix}.{k}" if prefix else k for k in types_]
            raise UserError(f"--set: unknown key '{dotted}'{_nearest(dotted, valid)}")
        if i == len(parts) - 1:
            kind = types_[part]
            if dataclasses.is_dataclass(kind):
                raise UserError(f"--set: '{dotted}' is a section; set one of its keys")
            meta = {f.name: f.metadata for f in dataclasses.fields(node)}[part]
            if "command_line" in meta:
                raise UserError(f"--set: {part} is a command-line flag: {meta['command_line']}")
            value = _coerce(_parse_value(raw, kind), kind, f"--set: key '{dotted}'", meta)
            setattr(node, part, value)
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise UserError(f"--set: '{'.'.join(parts[: i + 1])}' is not a section")


def _parse_value(raw: str, kind: Any) -> Any:
    """Parse a command-line value as YAML; 'a,b' is a list and plain text stays a string."""
    if kind is str:
        return raw
    if typing.get_origin(kind) is list and not raw.strip().startswith("["):
        raw = f"[{raw}]" if raw.strip() else "[]"
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return raw
