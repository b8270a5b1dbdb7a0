#!/usr/bin/env python3
"""Regenerate the shell completion scripts in completions/ from the installed `vlm`.

    python scripts/gen_completions.py [OUT_DIR]      # default: completions/ of this repo

The scripts come from Typer's own completion machinery (`_VLM_COMPLETE=source_<shell> vlm`), the
same text that `vlm --install-completion` installs, so they stay right as long as they are fresh;
tests/test_completions.py regenerates them into a temporary folder and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# File names each shell looks for: bash-completion loads `vlm` or `vlm.bash`, zsh's fpath wants
# `_vlm`, fish's completions folder wants `vlm.fish`.
FILES = {"bash": "vlm.bash", "zsh": "_vlm", "fish": "vlm.fish"}


def vlm_command() -> list[str]:
    """The `vlm` console script beside this interpreter (its name is the completion's program name)."""
    script = Path(sys.executable).parent / "vlm"
    if not script.exists():
        sys.exit(f"gen_completions: no vlm script beside {sys.executable}; run it with the venv's python")
    return [str(script)]


def completion_script(shell: str) -> str:
    """What Typer prints for `_VLM_COMPLETE=source_<shell> vlm`."""
    env = {**os.environ, "_VLM_COMPLETE": f"source_{shell}"}
    out = subprocess.run(vlm_command(), env=env, capture_output=True, text=True, check=True)
    if not out.stdout.strip():
        sys.exit(f"gen_completions: vlm printed no {shell} script: {out.stderr.strip()}")
    return out.stdout.strip() + "\n"


def generate(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        path = out_dir / name
        path.write_text(completion_script(shell), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "completions"
    for path in generate(target):
        print(path)
