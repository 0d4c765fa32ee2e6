"""The input a trained network expects, recorded in every checkpoint it is saved in.

A network's weights only make sense with the pixels it was trained on: channel order, the
mean and std subtracted and divided (0..255 scale, in that channel order) and how images are
sized. ``InputSpec`` travels in each checkpoint's ``meta`` so a later stage can compare it
with its own config instead of trusting a YAML comment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

MEAN_TOLERANCE = 1.0  # 0..255 scale: per-channel means closer than this count as the same
STD_TOLERANCE = 0.01  # relative: stds within 1% count as the same


@dataclass(frozen=True)
class InputSpec:
    """What one network's input pixels are."""

    channel_order: str  # "RGB" or "BGR"
    pixel_mean: tuple[float, ...]  # per channel, channel_order order, 0..255 scale
    pixel_std: tuple[float, ...]  # per channel, channel_order order, 0..255 scale
    size: str  # the size policy in words, e.g. "shorter side 600, longer <= 1000"

    @classmethod
    def make(
        cls, channel_order: str, mean: Sequence[float], std: Sequence[float], size: str
    ) -> InputSpec:
        return cls(channel_order, tuple(map(float, mean)), tuple(map(float, std)), size)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, str), loadable with ``torch.load(weights_only=True)``."""
        d = asdict(self)
        return {**d, "pixel_mean": list(self.pixel_mean), "pixel_std": list(self.pixel_std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputSpec:
        return cls.make(d["channel_order"], d["pixel_mean"], d["pixel_std"], d.get("size", ""))

    def describe(self) -> str:
        """One line: ``RGB mean (123.7, 116.3, 103.5) std (1, 1, 1)``."""
        return (
            f"{self.channel_order} mean ({', '.join(f'{v:.4g}' for v in self.pixel_mean)}) "
            f"std ({', '.join(f'{v:.4g}' for v in self.pixel_std)})"
        )

    def pixels_differ(self, other: InputSpec) -> bool:
        """True when the two normalise pixels differently (the size policy is not compared:
        a classifier and a detector built on it size their images differently)."""
        if self.channel_order != other.channel_order:
            return True
        means = zip(self.pixel_mean, other.pixel_mean)
        stds = zip(self.pixel_std, other.pixel_std)
        return any(abs(a - b) > MEAN_TOLERANCE for a, b in means) or any(
            abs(a - b) > STD_TOLERANCE * max(abs(a), abs(b)) for a, b in stds
        )
