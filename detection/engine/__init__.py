"""The training engine shared by pretraining and detection training.

distributed (torchrun set-up and collectives), seeding (seeds, deterministic mode, RNG
states), checkpoint (atomic checkpoints, resume), logging (metrics.jsonl, TensorBoard,
progress bar), solver (SGD param groups, warm-up x multi-step lr), loop (the plain loop).
"""

from detection.engine.checkpoint import Checkpointer, atomic_torch_save, load_latest
from detection.engine.logging import MetricsLogger
from detection.engine.loop import (
    LoopOptions,
    NonFiniteLossError,
    TrainingInterrupted,
    make_grad_scaler,
    prepare_model,
    train_loop,
)
from detection.engine.seeding import (
    capture_rng_state,
    restore_rng_state,
    seed_everything,
    set_deterministic,
)
from detection.engine.solver import WarmupMultiStepLR, build_optimizer, param_groups

__all__ = [
    "Checkpointer",
    "LoopOptions",
    "MetricsLogger",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "WarmupMultiStepLR",
    "atomic_torch_save",
    "build_optimizer",
    "capture_rng_state",
    "load_latest",
    "make_grad_scaler",
    "param_groups",
    "prepare_model",
    "restore_rng_state",
    "seed_everything",
    "set_deterministic",
    "train_loop",
]
