"""What nvidia-smi says about the GPUs, for the few places that ask (no CUDA, no torch import)."""

from __future__ import annotations

import shutil
import subprocess


def nvidia_smi(query: str, timeout_s: float = 10.0) -> list[list[str]] | None:
    """Rows of `nvidia-smi QUERY --format=csv,noheader,nounits`, each split into stripped fields
    (QUERY is e.g. `--query-gpu=memory.used`); None when nvidia-smi is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [[part.strip() for part in line.split(",")] for line in out.stdout.strip().splitlines()]
