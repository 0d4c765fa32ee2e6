"""`resdet <command>`: the one console script; each command lives in its own module.

A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; its one-line
help lives in ``COMMANDS`` below. Modules are imported only when their command runs, so
`resdet --help` stays fast and a broken stage cannot break the others.

Errors are one line on stderr, ``resdet <command>: error: <message>``, exit code 2: a bad
argument (argparse's, without the usage block) or a :class:`UserError` from the command. A
reader that closes stdout early (``resdet score ... | head``) ends the command quietly with
exit code 141 (128 + SIGPIPE, what a shell reports for any writer whose reader left, so
``set -o pipefail`` scripts see the output was cut), without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from engine.errors import RunStopped, UserError
from tools.arguments import is_main_process

# command -> (module, one-line help); the help is here so `--help` imports no command module
COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("tools.pretrain", "train or evaluate a classification backbone (ImageNet, CIFAR)"),
    "train": ("tools.train", "train a Faster R-CNN detector from a config"),
    "eval": ("tools.eval", "evaluate a detector checkpoint (or an ensemble) on the test split"),
    "infer": ("tools.infer", "run a detector on images and draw the detections"),
    "score": ("tools.score", "score saved VOC/COCO result files without a model"),
    "submit": ("tools.submit", "validate and package results for the COCO / VOC servers"),
    "make-dataset": ("tools.make_dataset", "generate the synthetic shapes data set"),
    "split-dataset": ("tools.split_dataset", "write split files for a folder of VOC/LabelImg XML"),
    "browse": ("tools.browse", "draw a data set's ground-truth boxes on its images"),
    "dataset-stats": ("tools.dataset_stats", "objects per class, box sizes, anchor coverage"),
    "convert": ("tools.convert", "convert third-party detector weights to resdet's layout"),
    "export": ("tools.export", "write a detector as one ONNX file, postprocessing included"),
    "flops": ("tools.flops", "print parameters and multiply-adds of a backbone or detector"),
    "benchmark": ("tools.benchmark", "measure speed of the data loader, model and evaluators"),
    "demo": ("tools.demo", "the embedded end-to-end default: data, pretrain, train, eval"),
    "compare": ("tools.compare", "the paper's Table 7/8 with our numbers beside its own"),
    "plot": ("tools.plot", "draw training curves (or the paper's Fig. 6) from runs' metrics.jsonl"),
    "report": ("tools.report", "write one self-contained HTML report of a detection run"),
}


# the commands that compute: their loops choose the thread count from the load (engine.threads)
FOLLOW_LOAD = ("train", "pretrain", "eval", "infer")

READER_GONE = 141  # exit code when stdout's reader closed it: 128 + SIGPIPE, as shells report


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``resdet <command>: error: ...``), exit code 2;
    the usage stays one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("resdet")
    except Exception:  # not installed (running from a source tree)
        return "0.1.0"


def _load(command: str) -> Any:
    return importlib.import_module(COMMANDS[command][0])


def _show_library_messages() -> None:
    """The packages' INFO messages (which weights were loaded, ...) on stderr, rank 0 only."""
    if not is_main_process():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("resdet: %(message)s"))
    for name in ("engine", "backbones", "detection"):
        package = logging.getLogger(name)
        if not package.handlers:
            package.setLevel(logging.INFO)
            package.addHandler(handler)


def _threads(command: str) -> contextlib.AbstractContextManager[object]:
    """The commands that compute choose their thread count from the load (engine.threads;
    imported here, not at the top: ``resdet --help`` imports no torch)."""
    if command not in FOLLOW_LOAD:
        return contextlib.nullcontext()
    from engine import threads

    return threads.following_load()


def _one_line_warnings(command: str) -> None:
    """Warnings on stderr as ``resdet <command>: warning: <message>`` (one line each: not
    Python's default file:line header and source line, which point into our internals)."""

    def one_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
        text = " ".join(str(message).split())
        return f"resdet {command}: warning: {text} ({category.__name__})\n"

    warnings.formatwarning = one_line


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="resdet", description="Object detection on residual backbones.")
    parser.add_argument("--version", action="version", version=f"resdet {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``resdet`` with ``argv`` (default: the command line); returns the exit code."""
    try:
        try:
            return _main(list(sys.argv[1:] if argv is None else argv))
        finally:  # also after --help: a closed pipe shows here, not in the interpreter's exit
            sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """stdout's reader has closed it: point stdout at /dev/null, so that the interpreter's
    final flush of what is still buffered cannot fail again, and stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (tests, embedding)
        pass
    return READER_GONE


def _main(argv: list[str]) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line itself, for a command that starts copies of itself
    if args.command is None:
        parser.print_help()
        return 2
    _show_library_messages()
    _one_line_warnings(args.command)
    module = _load(args.command)
    try:
        with _threads(args.command):
            return int(module.run(args) or 0)
    except UserError as exc:
        print(f"resdet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RunStopped as exc:
        print(f"resdet {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGINT after a checkpoint was saved
        print(f"resdet {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
