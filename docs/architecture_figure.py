"""Draws docs/architecture.png, the layers; run from the checkout:

python docs/architecture_figure.py
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

LAYERS = [  # (label, contents, y, x0, width, colour)
    ("tools/  (resdet <command>)", "parse -> config -> build -> run; benchmarks/ beside it",
     4.0, 0.0, 10.0, "#dfe7f2"),
    ("backbones/pretrain/  the classification task",
     "PretrainConfig, ImageFolder/CIFAR/Tiny ImageNet\nreaders, augmentation, 10-crop / multi-scale test",
     2.7, 0.0, 4.8, "#e8f2df"),
    ("detection/  the detection task",
     "Config, VOC/COCO readers, transforms, Faster R-CNN\n"
     "(RPN, RoI heads, C4/VGG/FPN, CPU RoI kernels), the one\ninference route, VOC/COCO evaluation",
     2.7, 5.2, 4.8, "#f2e8df"),
    ("backbones/  the networks",
     "ResNets (options A/B/C, plain twins), CIFAR nets, VGG; build_from_config; fused conv +\n"
     "ReLU / add; weights (one unwrapping, checksummed reads); params and MACs",
     1.4, 0.0, 10.0, "#efe3f3"),
    ("engine/  the task-independent foundation",
     "errors, io, config machinery, distributed, seeding, amp, device, images + bad-image\n"
     "policy, paths, fastpath, stops, samplers, input spec, solver, checkpoints, run\n"
     "directories + runfolder reader, exports, metrics, the loop, run_training(task)",
     0.0, 0.0, 10.0, "#eeeeee"),
]  # fmt: skip


def main() -> None:
    fig, ax = plt.subplots(figsize=(10, 5.6))
    for label, contents, y, x0, width, colour in LAYERS:
        box = FancyBboxPatch((x0, y), width, 1.0, boxstyle="round,pad=0.02,rounding_size=0.08",
                             facecolor=colour, edgecolor="#555555")  # fmt: skip
        ax.add_patch(box)
        ax.text(x0 + 0.15, y + 0.78, label, fontsize=11, weight="bold", va="center")
        ax.text(x0 + 0.15, y + 0.38, contents, fontsize=8.5, va="center")
    arrows = [(5.0, 4.0, 5.0, 3.75), (2.4, 2.7, 2.4, 2.45), (7.6, 2.7, 7.6, 2.45),
              (5.0, 1.4, 5.0, 1.05)]  # fmt: skip
    for x, y, x2, y2 in arrows:
        ax.annotate("", xy=(x2, y2), xytext=(x, y), arrowprops={"arrowstyle": "->", "lw": 1.5})
    ax.text(10.15, 2.5, "imports\npoint\ndown\n(to any\nlayer\nbelow)", fontsize=8.5, va="center")
    ax.set_xlim(-0.1, 11.0)
    ax.set_ylim(-0.1, 5.1)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig("docs/architecture.png", dpi=110)


if __name__ == "__main__":
    main()
