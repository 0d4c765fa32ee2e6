"""The task-independent foundation under both tasks (imports neither backbones nor detection).

errors (UserError, RunStopped, DataWarning), io (atomic writes, checked reads), config (the
config machinery and the shared sections), distributed (torchrun set-up and collectives),
seeding, amp, images (decoding and the bad-image policy), samplers (resumable training and
inference samplers), spec (the input a network expects), solver (SGD groups, warm-up x
multi-step lr), checkpoint (atomic checkpoints, resume), metrics (metrics.jsonl, TensorBoard,
progress), loop (the plain training loop), stops (SIGTERM / SIGINT for a run and its
DataLoader workers), run (one orchestrator for any task), rundir (a run owns its output_dir),
runfolder (a run folder's file names and the one reader of them) and exports (the lazy
exports of every package's __init__).
"""

# Exports: none (a package exports only through an _EXPORTS map, see engine.exports).
