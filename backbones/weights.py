"""Load backbone weights: ours, torchvision's, MSRA/Detectron blobs, pytorch_resnet_cifar10's.

Formats (detected from the keys unless named):
  resdet:      our state dict (`stem.conv1.weight`, `res2.0.conv1.weight`, `fc.weight`,
               VGG `features.0.weight`, `fc67.0.weight`, `fc8.weight`), bare or under a
               "model" / "state_dict" key, possibly without the classifier (a backbone.pth).
  torchvision: `conv1/bn1/layer1..4/fc` (ResNet) or `features.N/classifier.N` (VGG).
  msra:        Caffe/Detectron blob names in a .pkl (name -> numpy array, maybe under
               "blobs" or "model"): `conv1_w`, `res_conv1_bn_s/_b`, `res2_0_branch2a_w`,
               `res2_0_branch2a_bn_s`, `res2_0_branch1_w`, `fc1000_w/_b`; VGG `conv1_1_w/_b`,
               `fc6_w`, ... A `_bn_s/_b` pair is the folded affine of a BN: it loads as
               weight/bias with running mean 0 and running var 1 - eps, which is exact.
  cifar:       pytorch_resnet_cifar10 (github akamaster) CIFAR ResNets, e.g. its
               resnet20-12fca82f.th (`{"best_prec1", "state_dict"}`, keys under `module.`):
               `conv1/bn1`, `layer1..3.{i}.{conv,bn}{1,2}`, `linear`, no `layer4`/`fc`.
               Loads into the CIFAR net of the same depth (`resnet20`.., `cifar_resnet(n)`)
               with option-A shortcuts, whose zero padding is placed as in that code.

The weights are not a recipe: MSRA models expect BGR 0..255 inputs minus the pixel mean and
use `stride_in_1x1=True`; torchvision models expect RGB 0..1 normalised and stride on the 3x3;
pytorch_resnet_cifar10's were trained on RGB 0..1 inputs normalised with ImageNet's mean/std
too (not the paper's per-pixel mean). Build the model and the input pipeline to match. To load
into a model that holds a backbone (a detector), pass that submodule:
`load_weights(detector.backbone, path)`.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from backbones.cifar import CIFAR_DEPTHS, CifarResNet
from backbones.layers import BATCH_NORMS
from backbones.resnet import PadShortcut, ResNet
from backbones.vgg import VGG
from engine.checkpoint import read_verified
from engine.errors import UserError

FORMATS = ("resdet", "torchvision", "msra", "cifar")
SHOWN_KEYS = 5  # keys listed per problem in an error message before "... and N more"

RenameFn = Callable[[re.Match[str]], str]  # a key's matched prefix -> its new prefix


@dataclass
class LoadReport:
    """What `load_weights` did.

    Attributes:
        format: the format the source was read as.
        missing: model keys the source did not provide (left as initialised).
        unexpected: source keys (after renaming) the model does not have (ignored).
        shape_mismatch: "key: checkpoint (shape) vs model (shape)" for keys not loaded.
        classifier_loaded: False when the classifier was skipped or absent from the source.
        left_as_initialised: the `skip` prefixes asked for.
    """

    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    classifier_loaded: bool = True
    loaded: int = 0  # tensors copied into the model
    left_as_initialised: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model key was loaded from a matching source key."""
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def summary(self) -> str:
        """One line for the log: what was loaded and what was not, and why."""
        parts = [f"{self.loaded} tensors loaded ({self.format} format)"]
        if not self.classifier_loaded:
            parts.append("classifier not loaded (the model keeps its own)")
        if self.left_as_initialised:
            parts.append(f"{', '.join(self.left_as_initialised)} left as initialised")
        if not self.ok:
            parts.append(self.describe())
        return "; ".join(parts)

    def describe(self) -> str:
        """The problems on one line, long lists truncated."""
        parts = []
        for what, keys in (
            ("missing key", self.missing),
            ("unexpected key", self.unexpected),
            ("shape mismatch", self.shape_mismatch),
        ):
            if keys:
                plural = "es" if what.endswith("h") else "s"
                parts.append(f"{len(keys)} {what}{plural if len(keys) > 1 else ''}: {_list(keys)}")
        return "; ".join(parts) if parts else "all keys loaded"


def _list(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = len(keys) - SHOWN_KEYS
    return f"{shown} ... and {more} more" if more > 0 else shown


def load_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    format: str = "auto",
    skip_classifier: bool = False,
    strict: bool = True,
    trust: bool = False,
    skip: Sequence[str] = (),
) -> LoadReport:
    """Load weights into `model` (a backbone from this package) in place.

    Args:
        model: the backbone; for a detector, pass its backbone submodule.
        source: a .pth/.pt file, a .pkl blob file, or a state dict (tensors or numpy arrays).
        format: "auto" (detect from the keys), "resdet", "torchvision", "msra" or "cifar".
        skip_classifier: leave the classifier (`fc` / VGG `fc8`) as initialised, e.g. to
            fine-tune with another number of classes.
        strict: raise UserError on any missing, unexpected or mis-shaped key; when False,
            load what matches and return the report.
        trust: the file may be unpickled fully (see :func:`read_source`).
        skip: name prefixes (``fc67``, ``res5.2``) of the model's modules to leave as
            initialised; each must name at least one of its parameters.

    Returns:
        A LoadReport listing what did not load.

    Raises:
        UserError: unreadable source, unknown format, a `skip` prefix that names nothing, or
            (strict) keys that do not match.
    """
    where = f"weights {str(source)!r}" if isinstance(source, (str, Path)) else "state dict"
    state = read_source(source, trust) if isinstance(source, (str, Path)) else dict(source)
    state = unwrap_state_dict(state)
    if format == "auto":
        format = detect_format(state)
    if format not in CONVERTERS:
        raise UserError(f"{where}: format {format!r} is not known; expected auto or {FORMATS}")
    try:
        converted = CONVERTERS[format](state, model)
    except UserError as exc:  # the converter knows what is wrong; say which source it was
        raise UserError(f"{where}: {exc}") from exc
    report = _load_state(model, converted, format, skip_classifier, _skipped(model, skip))
    report.left_as_initialised = list(skip)
    if strict and not report.ok:
        hint = ""
        if report.shape_mismatch and not skip_classifier:
            hint = " (skip_classifier=True keeps the model's own classifier)"
        raise UserError(
            f"{where} ({format} format) does not fit {type(model).__name__}: "
            f"{report.describe()}{hint}"
        )
    return report


TRUST_FLAG = "--trust-weights"  # the command-line flag that sets ``trust`` (never a file)


def read_source(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """Read a weights file without running code from it (unless ``trust``).

    ``.pth``/``.pt``/other: ``engine.checkpoint.read_verified`` (``torch.load(weights_only=
    True)``: tensors and plain values only; the bytes checked against a SHA-256 sidecar when
    the file has one, as resdet's checkpoints do).
    ``.pkl`` (MSRA/Detectron blobs): an unpickler that builds only numpy arrays, dicts, lists
    and numbers. A file that needs more (any other class) can run arbitrary code when
    unpickled, so it is refused unless ``trust`` (the ``--trust-weights`` flag of the person
    running the command, never a config file) says it is the user's own.

    Raises:
        UserError: missing, unreadable or untrusted file, or one that holds no dict; the flag
            is suggested only for a pickle that names a class the safe readers refuse.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {str(path)!r} does not exist")
    try:
        state = _unpickle(path, trust)
    except (
        pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError, IndexError,
        KeyError, TypeError, AttributeError, ImportError,
    ) as exc:  # fmt: skip
        raise _unreadable(path, exc, trust) from None
    if not isinstance(state, dict):
        raise UserError(
            f"weights file {str(path)!r} holds a {type(state).__name__}; expected a state dict"
        )
    return state


def _unreadable(path: Path, exc: Exception, trust: bool) -> UserError:
    """The one-line error for a weights file the loader failed on: refused (a pickled class
    that could run code: name it and the flag) or simply not a checkpoint (no flag)."""
    refused = None if trust else (_refused_global(exc) or _foreign_global(path))
    if refused:
        return UserError(
            f"weights file {str(path)!r} holds more than tensors and plain values ({refused}); "
            f"unpickling it could run code from the file: if you made it, {TRUST_FLAG}"
        )
    return UserError(f"weights file {str(path)!r} is not a readable checkpoint: {_reason(exc)}")


def _refused_global(exc: Exception) -> str | None:
    """The class the safe unpickler refused, from torch's (many-line) message or ours."""
    found = re.search(r"(?:global: GLOBAL|unsupported GLOBAL|refused to load) ([\w.]+)", str(exc))
    return found.group(1) if found else None


def _reason(exc: Exception) -> str:
    """Why a file could not be read, in one line, without torch's advice to load it with
    ``weights_only=False`` (that would run whatever code the file holds)."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    line = found.group(1) if found else next((t for t in text.splitlines() if t.strip()), "")
    if "weights_only" in line or not line:
        return f"not a PyTorch checkpoint or pickle ({type(exc).__name__})"
    return line.strip()


def _foreign_global(path: Path) -> str | None:
    """The first class (``module.name``) outside torch's and numpy's safe set that the
    file's pickle names, when the file is a well-formed pickle (a PyTorch zip's
    ``data.pkl``, or the file itself); None for anything else, e.g. random bytes."""
    try:
        data = _pickle_bytes(path)
        names = _pickled_globals(data)
    except Exception:  # not a well-formed pickle: nothing to trust
        return None
    safe = {f"{m}.{n}" for m, n in _SAFE_PICKLE_GLOBALS}
    return next((n for n in names if n not in safe and not n.startswith("torch.")), None)


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of a weights file: a PyTorch zip's ``data.pkl`` or the whole file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            return archive.read(name)
    return path.read_bytes()


def _pickled_globals(data: bytes) -> list[str]:
    """``module.name`` of every class a pickle stream names (GLOBAL, STACK_GLOBAL, INST);
    raises if the stream up to its STOP is not a well-formed pickle."""
    names: list[str] = []
    strings: list[str] = []  # STACK_GLOBAL takes its module and name from the last two pushed
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name in ("GLOBAL", "INST"):
            names.append(str(arg).replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]) if len(strings) >= 2 else "a pickled class")
        elif isinstance(arg, str):
            strings.append(arg)
    return names


# what a Detectron / MSRA blob file may contain: numpy arrays and Python containers
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict"),
    ("_codecs", "encode"), ("builtins", "bytes"),
}  # fmt: skip


class _BlobUnpickler(pickle.Unpickler):
    """Builds numpy arrays and containers; any other class is refused (it could run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _unpickle(path: Path, trust: bool) -> Any:
    if path.suffix not in (".pkl", ".pickle"):
        return read_verified(path, trust)  # a SHA-256 sidecar, if there is one, is checked
    with path.open("rb") as f:  # Detectron's blobs are Python 2 pickles: latin1
        if trust:
            return pickle.load(f, encoding="latin1")
        return _BlobUnpickler(f, encoding="latin1").load()


def unwrap_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict inside a checkpoint (under "model", "state_dict" or MSRA's "blobs"),
    its tensors only (numpy arrays as tensors), without DDP's ``module.`` or torch.compile's
    ``_orig_mod.`` prefix: the one unwrapping for backbone and detector weights alike."""
    for key in ("model", "state_dict", "blobs"):
        if isinstance(state.get(key), Mapping):
            return unwrap_state_dict(state[key])
    tensors = {
        k: torch.as_tensor(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        for k, v in state.items()
        if isinstance(v, (Tensor, np.ndarray)) and not k.endswith("_momentum")  # Caffe2 solver
    }
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def detect_format(state: Mapping[str, Any]) -> str:
    """ "cifar", "torchvision", "msra" or "resdet", from the key names."""
    keys = list(state)
    # before torchvision: pytorch_resnet_cifar10 also has conv1/bn1/layerN, but 3 stages + linear
    stages = {match[1] for k in keys if (match := re.match(r"layer(\d+)\.", k))}
    if stages == {"1", "2", "3"} and _has_prefix(keys, "linear.") and not _has_prefix(keys, "fc."):
        return "cifar"
    if any(re.match(r"(layer\d\.|classifier\.|conv1\.weight$|bn1\.)", k) for k in keys):
        return "torchvision"
    if keys and all("." not in k for k in keys):
        return "msra"
    return "resdet"


def _has_prefix(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _rename(state: Mapping[str, Tensor], rules: list[tuple[str, RenameFn]]) -> dict[str, Tensor]:
    """Apply the first matching (pattern, fn(match) -> new prefix) rule to each key."""
    out = {}
    for key, value in state.items():
        new_key = key
        for pattern, fn in rules:
            match = re.match(pattern, key)
            if match:
                new_key = fn(match) + key[match.end() :]
                break
        out[new_key] = value
    return out


_TORCHVISION_RESNET: list[tuple[str, RenameFn]] = [
    (r"conv1\.", lambda m: "stem.conv1."),
    (r"bn1\.", lambda m: "stem.bn1."),
    (r"layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.conv."),
    (r"layer(\d)\.(\d+)\.downsample\.1\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.bn."),
    (r"layer(\d)\.(\d+)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}."),
]
_TORCHVISION_VGG: list[tuple[str, RenameFn]] = [
    (r"classifier\.0\.", lambda m: "fc67.0."),
    (r"classifier\.3\.", lambda m: "fc67.3."),
    (r"classifier\.6\.", lambda m: "fc8."),
]


def from_torchvision(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """torchvision resnet*/vgg* names -> ours."""
    if isinstance(model, ResNet):
        return _rename(state, _TORCHVISION_RESNET)
    if isinstance(model, VGG):
        return _rename(state, _TORCHVISION_VGG)
    # a CIFAR checkpoint without `linear` has nothing but torchvision's names to detect
    cifar = isinstance(model, CifarResNet)
    hint = "; pytorch_resnet_cifar10's load with format 'cifar'" if cifar else ""
    raise UserError(
        "torchvision weights exist for ImageNet ResNets and VGG only, "
        f"not {type(model).__name__}{hint}"
    )


# pytorch_resnet_cifar10: block internals (conv1, bn1, conv2, bn2) already have our names
_CIFAR_RESNET: list[tuple[str, RenameFn]] = [
    (r"conv1\.", lambda m: "stem.conv1."),
    (r"bn1\.", lambda m: "stem.bn1."),
    (r"layer(\d)\.(\d+)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}."),
    (r"linear\.", lambda m: "fc."),
]


def from_cifar(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """pytorch_resnet_cifar10 names -> ours, once the model is known to be the same network.

    Raises:
        UserError: the model is not a CIFAR net, has another number of blocks per stage, or
            has no option-A shortcuts (those have no weights, so only this check sees them).
    """
    if not isinstance(model, CifarResNet):
        raise UserError(
            "pytorch_resnet_cifar10 (cifar format) weights fit the CIFAR ResNets "
            f"(resnet20..resnet1202, cifar_resnet(n)), not {type(model).__name__}"
        )
    theirs, ours = _blocks_per_stage(state), [len(model.res2), len(model.res3), len(model.res4)]
    if theirs != ours:
        build = f"; build {_cifar_builder(theirs[0])}" if len(set(theirs)) == 1 else ""
        raise UserError(
            f"pytorch_resnet_cifar10 (cifar format) weights of a {_cifar_depth(theirs)} do not "
            f"fit the model, a {_cifar_depth(ours)}{build}"
        )
    if not any(isinstance(m, PadShortcut) for m in model.modules()):
        raise UserError(
            "pytorch_resnet_cifar10 (cifar format) weights need option-A shortcuts; the model "
            "has none (a plain net, or shortcut B/C): build the resnetN with shortcut='A'"
        )
    return _rename(state, _CIFAR_RESNET)


def _blocks_per_stage(state: Mapping[str, Tensor]) -> list[int]:
    """Blocks in layer1..3 of a pytorch_resnet_cifar10 state dict (n each for depth 6n + 2)."""
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set()}
    for key in state:
        match = re.match(r"layer([123])\.(\d+)\.", key)
        if match:
            blocks[int(match[1])].add(int(match[2]))
    return [len(blocks[stage]) for stage in (1, 2, 3)]


def _cifar_builder(n: int) -> str:
    """The backbone name for n blocks per stage (resnet20..), else the cifar_resnet call."""
    depth = 6 * n + 2
    return f"resnet{depth}" if depth in CIFAR_DEPTHS else f"cifar_resnet({n})"


def _cifar_depth(blocks: list[int]) -> str:
    """ "ResNet-20 (n=3)" for [3, 3, 3]; the counts themselves when the stages differ."""
    if len(set(blocks)) == 1:
        return f"ResNet-{6 * blocks[0] + 2} (n={blocks[0]})"
    return f"net of {blocks} blocks per stage"


_CAFFE_SUFFIX = {"w": "weight", "b": "bias"}
_CAFFE_BN_SUFFIX = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_MSRA_KEY = re.compile(
    r"(?P<layer>conv1|res_conv1|res(?P<stage>\d)_(?P<block>\d+)_branch(?P<branch>1|2[abc])"
    r"|fc\d+|conv\d_\d)(?P<bn>_bn)?_(?P<suffix>w|b|s|rm|riv)"
)


def _msra_key(key: str, model: nn.Module) -> str:
    """One blob name -> our key, e.g. res2_0_branch2a_bn_s -> res2.0.bn1.weight.

    Names that do not fit `model` come back unchanged (and are then reported unexpected).
    """
    match = _MSRA_KEY.fullmatch(key)
    suffixes = _CAFFE_BN_SUFFIX if match and match["bn"] else _CAFFE_SUFFIX
    if match is None or match["suffix"] not in suffixes:
        return key
    layer, is_bn = match["layer"], match["bn"] is not None
    module: str | None = None
    if isinstance(model, ResNet):
        if match["stage"]:
            branch = {"1": "shortcut.conv", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
            name = branch[match["branch"]]
            if is_bn:  # shortcut.conv -> shortcut.bn, conv1 -> bn1
                name = name.replace("conv", "bn") if "." in name else "bn" + name[-1]
            module = f"res{match['stage']}.{match['block']}.{name}"
        elif layer in ("conv1", "res_conv1"):
            module = "stem.bn1" if is_bn else "stem.conv1"
        elif layer.startswith("fc") and not is_bn:
            module = "fc"  # fc1000
    elif isinstance(model, VGG) and not is_bn:
        fc = {"fc6": "fc67.0", "fc7": "fc67.3", "fc8": "fc8"}
        convs = model.conv_indices()
        module = fc.get(layer) or (f"features.{convs[layer]}" if layer in convs else None)
    return key if module is None else f"{module}.{suffixes[match['suffix']]}"


def from_msra(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Caffe/Detectron blob names -> ours; folded BN affines get mean 0, var 1 - eps."""
    if not isinstance(model, (ResNet, VGG)):
        raise UserError(
            f"MSRA weights exist for ImageNet ResNets and VGG only, not {type(model).__name__}"
        )
    renamed = {_msra_key(key, model): value for key, value in state.items()}
    _complete_norm_stats(renamed, model)
    return renamed


def _complete_norm_stats(state: dict[str, Tensor], model: nn.Module) -> None:
    """Give every norm that has a weight but no statistics mean 0 and var 1 - eps.

    Then (x - 0) / sqrt(1 - eps + eps) * s + b = x * s + b: the blob's affine, exactly.
    """
    for name, module in model.named_modules():
        if isinstance(module, BATCH_NORMS) and f"{name}.weight" in state:
            weight = state[f"{name}.weight"]
            state.setdefault(f"{name}.running_mean", torch.zeros_like(weight))
            state.setdefault(f"{name}.running_var", torch.ones_like(weight) - module.eps)


def _skipped(model: nn.Module, prefixes: Sequence[str]) -> Callable[[str], bool]:
    """Whether a key lies under one of `prefixes` (whole name parts: ``fc6`` is not ``fc67``).

    Raises:
        UserError: a prefix names none of the model's keys.
    """
    keys = list(model.state_dict())

    def under(key: str, prefix: str) -> bool:
        return key == prefix or key.startswith(prefix.rstrip(".") + ".")

    for prefix in prefixes:
        if not any(under(k, prefix) for k in keys):
            tops = sorted({k.split(".")[0] for k in keys})
            raise UserError(
                f"weights skip prefix {prefix!r} (model.backbone.weights_skip) names no "
                f"parameter of {type(model).__name__}; its modules: {', '.join(tops)}"
            )
    return lambda key: any(under(key, p) for p in prefixes)


def _load_state(
    model: nn.Module,
    state: dict[str, Tensor],
    format: str,
    skip_classifier: bool,
    skipped: Callable[[str], bool] = lambda key: False,
) -> LoadReport:
    """Load the keys that match in name and shape, but the `skipped` ones; report the rest."""
    target = {k: v for k, v in model.state_dict().items() if not skipped(k)}
    state = {k: v for k, v in state.items() if not skipped(k)}
    prefix = getattr(model, "classifier", "fc") + "."
    has_classifier = any(k.startswith(prefix) for k in state)
    skip = skip_classifier or not has_classifier  # a backbone-only checkpoint is fine
    if skip:
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        target = {k: v for k, v in target.items() if not k.startswith(prefix)}

    def counted(key: str) -> bool:  # FrozenBN has no step counter; MSRA blobs have none
        return not key.endswith("num_batches_tracked")

    report = LoadReport(format, classifier_loaded=not skip)
    report.missing = [k for k in target if k not in state and counted(k)]
    report.unexpected = [k for k in state if k not in target and counted(k)]
    loadable = {}
    for key, value in state.items():
        if key not in target:
            continue
        if value.shape != target[key].shape:
            report.shape_mismatch.append(
                f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}"
            )
        else:
            loadable[key] = value
    model.load_state_dict(loadable, strict=False)
    report.loaded = len(loadable)
    return report


CONVERTERS: dict[str, Callable[[Mapping[str, Tensor], nn.Module], dict[str, Tensor]]] = {
    "resdet": lambda state, model: dict(state),
    "torchvision": from_torchvision,
    "msra": from_msra,
    "cifar": from_cifar,
}
