"""The machine a benchmark ran on, in the words its docs section names it.

Sessions and CI land on different CPUs (an AMD EPYC with AVX512-BF16, an Intel Xeon with
AMX), and the ratios differ between them, so every section names the CPU it was read off
rather than a fixed string.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from engine.threads import usable_cores

FEATURES = {"avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16"}


def cpu_description(cpuinfo: str | None = None) -> str:
    """E.g. "2-core Intel(R) Xeon(R) Processor (AVX-512, AVX512-BF16, AMX-BF16)".

    Args:
        cpuinfo: the text of /proc/cpuinfo (read when None; where it is missing the model is
            ``platform.processor()`` and no features are named).
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    named = [name for flag, name in FEATURES.items() if flag in flags]
    cores = usable_cores()
    return f"{cores}-core {model}" + (f" ({', '.join(named)})" if named else "")


def machine_description(device: str = "cpu") -> str:
    """The CPU, and the GPU when ``device`` is CUDA ("..., no GPU" otherwise)."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} on a {cpu_description()}"
    return f"{cpu_description()}, no GPU"
