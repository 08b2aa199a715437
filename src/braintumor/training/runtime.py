"""Where and how a model trains: the GPUs, the dtype policy (mixed precision where it pays),
mirroring across GPUs, the CPU's instruction-set flags, and the seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Runtime:
    """Where and how the model computes."""

    gpus: int
    dtype_policy: str  # "float32", "mixed_float16" or "mixed_bfloat16"
    mirrored: bool

    @property
    def mixed_precision(self) -> bool:
        return self.dtype_policy != "float32"


BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The instruction-set flags of this CPU (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def choose_runtime(
    gpus: int,
    mixed_precision: str = "auto",
    distribute: str = "auto",
    native_bf16_cpu: bool = False,
) -> Runtime:
    """float16 mixed precision when a GPU is present (or forced on); bfloat16 on request
    where it is native (any GPU of ours, or a CPU with AVX512_BF16/AMX): emulated bfloat16
    is slower than float32, so elsewhere the request falls back to float32; mirroring over
    more than one GPU."""
    if mixed_precision == "bfloat16":
        policy = "mixed_bfloat16" if gpus > 0 or native_bf16_cpu else "float32"
    elif mixed_precision == "on" or (mixed_precision == "auto" and gpus > 0):
        policy = "mixed_float16"
    else:
        policy = "float32"
    return Runtime(gpus, policy, distribute == "auto" and gpus > 1)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
