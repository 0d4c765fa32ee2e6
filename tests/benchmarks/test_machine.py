"""benchmarks._machine: the CPU a docs section names, read off /proc/cpuinfo."""

from __future__ import annotations

import os

from benchmarks._machine import cpu_description, machine_description

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
"""
EPYC = "model name\t: AMD EPYC 9R14 96-Core Processor\nflags\t\t: avx2 avx512f avx512_bf16\n"


def test_cpu_description_names_model_and_bf16_features() -> None:
    cores = len(os.sched_getaffinity(0))
    assert cpu_description(XEON) == (
        f"{cores}-core Intel(R) Xeon(R) Processor (AVX-512, AVX512-BF16, AMX-BF16)"
    )
    assert (
        cpu_description(EPYC)
        == f"{cores}-core AMD EPYC 9R14 96-Core Processor (AVX-512, AVX512-BF16)"
    )
    assert cpu_description("model name\t: Some CPU\n") == f"{cores}-core Some CPU"


def test_machine_description_says_no_gpu_on_cpu() -> None:
    assert machine_description("cpu").endswith(", no GPU")
