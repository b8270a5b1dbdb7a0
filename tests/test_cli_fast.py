"""The CLI surface without a model: help lists the commands and imports neither vLLM nor torch."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from vlmcli.app import app


def test_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("describe", "chat", "bench", "serve", "profiles"):
        assert command in result.output


def test_help_imports_no_engine():
    code = (
        "import sys\n"
        "from vlmcli.app import app\n"
        "from typer.testing import CliRunner\n"
        "for args in (['--help'], ['describe', '--help'], ['profiles', 'list'], ['ps', '--help'], ['stop', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "    assert args[1:] != ['--help'] or '--help' in result.output\n"
        "heavy = [m for m in ('vllm', 'torch', 'transformers', 'numpy', 'PIL') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_bad_flag_value_is_a_usage_error():
    result = CliRunner().invoke(app, ["describe", "x.png", "--temperature", "9"])
    assert result.exit_code == 2
