"""Shell completions: the shipped scripts are fresh, install works, and the real protocol completes
profile names after --profile and leaves media arguments to the shell's file completion."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, vlm_command

COMPLETIONS = REPO / "completions"
sys.path.insert(0, str(REPO / "scripts"))
import gen_completions  # noqa: E402


def completion_env(vlm_env: dict[str, str], **extra: str) -> dict[str, str]:
    """`vlm`'s environment with its folder first on PATH, as in a shell where it is installed."""
    bin_dir = str(Path(vlm_command()[0]).parent)
    return {**vlm_env, "PATH": bin_dir + os.pathsep + vlm_env.get("PATH", ""), **extra}


def complete_bash(vlm_env: dict[str, str], words: list[str], cword: int) -> list[str]:
    """Ask `vlm` for candidates the way the bash script does (COMP_WORDS / COMP_CWORD)."""
    env = completion_env(vlm_env, COMP_WORDS=" ".join(words), COMP_CWORD=str(cword), _VLM_COMPLETE="complete_bash")
    out = subprocess.run(vlm_command(), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_shipped_scripts_are_fresh(tmp_path: Path):
    fresh = gen_completions.generate(tmp_path)
    assert sorted(p.name for p in fresh) == sorted(p.name for p in COMPLETIONS.iterdir())
    for path in fresh:
        assert (COMPLETIONS / path.name).read_text() == path.read_text(), (
            f"completions/{path.name} is stale: run .venv/bin/python scripts/gen_completions.py"
        )
    assert "complete -o default -F _vlm_completion vlm" in (tmp_path / "vlm.bash").read_text()
    assert (tmp_path / "_vlm").read_text().startswith("#compdef vlm")
    assert "_VLM_COMPLETE=complete_fish" in (tmp_path / "vlm.fish").read_text()


def test_profile_names_complete_after_profile(vlm_env):
    assert complete_bash(vlm_env, ["vlm", "describe", "--profile", "tiny"], 3) == ["tiny-nemotron-nano-vl", "tiny-qwen2.5-vl"]
    assert complete_bash(vlm_env, ["vlm", "describe", "-P", "nemotron-nano-12b-v2-vl-f"], 3) == ["nemotron-nano-12b-v2-vl-fp8"]
    assert "qwen2.5-vl-7b-instruct" in complete_bash(vlm_env, ["vlm", "profiles", "show", ""], 3)


def test_user_profiles_complete_too(vlm_env, tmp_path: Path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "my-own-model.yaml").write_text("name: my-own-model\n")
    env = {**vlm_env, "VLM_CONFIG_DIR": str(tmp_path)}
    assert complete_bash(env, ["vlm", "describe", "--profile", "my-"], 3) == ["my-own-model"]


def test_media_arguments_fall_back_to_file_completion(vlm_env):
    # No candidates from vlm: bash (`complete -o default`), zsh (`_files`) and fish (is-args fails)
    # then complete file paths themselves.
    assert complete_bash(vlm_env, ["vlm", "describe", "ph"], 2) == []
    assert complete_bash(vlm_env, ["vlm", "describe", "a.png", "cl"], 3) == []
    zsh = subprocess.run(vlm_command(), capture_output=True, text=True, timeout=60, env=completion_env(
        vlm_env, _TYPER_COMPLETE_ARGS="vlm describe ph", _VLM_COMPLETE="complete_zsh"))
    assert zsh.stdout.strip() == "_files"
    fish = {"_VLM_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "is-args"}
    media = subprocess.run(vlm_command(), capture_output=True, text=True, timeout=60, env=completion_env(
        vlm_env, _TYPER_COMPLETE_ARGS="vlm describe ph", **fish))
    profile = subprocess.run(vlm_command(), capture_output=True, text=True, timeout=60, env=completion_env(
        vlm_env, _TYPER_COMPLETE_ARGS="vlm describe --profile ti", **fish))
    assert (media.returncode, profile.returncode) == (1, 0)


def test_zsh_protocol_lists_profiles(vlm_env):
    out = subprocess.run(vlm_command(), capture_output=True, text=True, timeout=60, env=completion_env(
        vlm_env, _TYPER_COMPLETE_ARGS="vlm describe --profile tiny-q", _VLM_COMPLETE="complete_zsh"))
    assert out.stdout.startswith("_arguments") and '"tiny-qwen2.5-vl"' in out.stdout, out.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_shipped_bash_script_in_real_bash(vlm_env):
    script = (
        f"source {COMPLETIONS / 'vlm.bash'}\n"
        "COMP_WORDS=(vlm describe --profile tiny-n); COMP_CWORD=3\n"
        "_vlm_completion vlm; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
        "COMP_WORDS=(vlm pro); COMP_CWORD=1\n"
        "_vlm_completion vlm; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    out = subprocess.run(["bash", "--norc", "-c", script], env=completion_env(vlm_env), capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["tiny-nemotron-nano-vl", "profiles"], out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_install_completion_writes_the_shipped_script(vlm_env, tmp_path: Path):
    # Typer detects the shell from the parent process; `; :` keeps bash from exec'ing vlm directly.
    env = completion_env(vlm_env, HOME=str(tmp_path))
    out = subprocess.run(["bash", "--norc", "-c", "vlm --install-completion; :"], env=env, capture_output=True, text=True, timeout=60)
    assert "bash completion installed" in out.stdout, out.stdout + out.stderr
    installed = tmp_path / ".bash_completions" / "vlm.sh"
    assert installed.read_text().strip() == (COMPLETIONS / "vlm.bash").read_text().strip()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
