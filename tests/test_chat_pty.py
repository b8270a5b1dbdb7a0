"""`vlm chat` on a real terminal (a pseudo-terminal): streaming, Ctrl+C stops an answer and the
chat (and the engine) goes on, Tab completion, history kept across sessions, Ctrl+D leaves."""

from __future__ import annotations

import os
import re
import time

import pytest

from conftest import OFFLINE_ENV, QWEN, REPO, vlm_command

pytestmark = pytest.mark.engine

PROMPT = ">>>"  # prompt_toolkit draws the space after it as a cursor move
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def plain(text: str) -> str:
    return ANSI.sub("", text)


def test_interactive_terminal(vlm_env, tiny_models_dir, media, tmp_path):
    import pexpect

    data_dir = tmp_path / "data"
    env = {**vlm_env, **os.environ, **OFFLINE_ENV, "VLM_CONFIG_DIR": vlm_env["VLM_CONFIG_DIR"], "VLM_DATA_DIR": str(data_dir), "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "COLUMNS": "100", "LINES": "30"}
    command, *args = vlm_command()
    child = pexpect.spawn(
        command, [*args, "chat", "--profile", QWEN, "--stats"], env=env, cwd=str(REPO),
        encoding="utf-8", dimensions=(30, 100), timeout=300,
    )
    child.logfile_read = open(tmp_path / "terminal.log", "w")  # what the terminal showed, for failures
    try:
        child.expect_exact(PROMPT)  # the model loaded
        assert "Traceback" not in child.before

        # Tab completes a slash command
        child.send("/hel\t")
        child.expect_exact("/help")
        child.send("\r")
        child.expect("Ctrl\\+C stops the answer")
        child.expect_exact(PROMPT)

        # A long answer streams; Ctrl+C stops it and the prompt comes back
        for line, echo in (("/set max_tokens 3000", "max_tokens = 3000"), ("/set ignore_eos on", "ignore_eos = True")):
            child.send(line + "\r")
            child.expect_exact(echo)
            child.expect_exact(PROMPT)
        child.send(f"Describe {media['image']} at length\r")
        child.expect_exact("attached image")
        seen = ""
        deadline = time.monotonic() + 60
        while len(plain(seen).strip()) < 60 and time.monotonic() < deadline:  # text arrives while generating
            try:
                seen += child.read_nonblocking(4096, timeout=1)
            except pexpect.TIMEOUT:
                pass
        assert len(plain(seen).strip()) >= 60, seen
        assert "output tokens" not in plain(seen)  # still generating: no stats line yet
        stopped_at = time.monotonic()
        child.sendintr()
        child.expect_exact("[stopped]", timeout=30)
        child.expect(r"\? prompt \+ (\d+) output tokens .*stopped")
        tokens = int(child.match.group(1))
        child.expect_exact(PROMPT)
        assert time.monotonic() - stopped_at < 30
        assert 1 <= tokens < 3000

        # Ctrl+C at the prompt clears the line; the engine survived and answers again
        child.send("half typed")
        child.sendintr()
        child.send("/set max_tokens 6\r")
        child.expect_exact("max_tokens = 6")
        child.send("Thanks!\r")
        child.expect(r"(\d+) prompt \+ 6 output tokens")
        assert int(child.match.group(1)) > 40  # the earlier turn, with its image, is still in the conversation
        child.expect_exact(PROMPT)

        # Tab completes a file path; a """ block spans lines (Enter inside it adds a line)
        child.send(f"/image {media['image'].parent}/pho\t")
        # prompt_toolkit may redraw the whole word or only the completed rest ("to.png")
        child.expect_exact("to.png")
        child.send("\r")
        child.expect_exact(f"attached image {media['image']}")
        child.send('"""\rfirst line\rsecond line"""\r')
        child.expect(r"(\d+) prompt \+ 6 output tokens")
        assert int(child.match.group(1)) > 100  # both images, both lines
        assert "... second line" in plain(child.before)  # one message: the continuation prompt showed
        child.expect_exact(PROMPT)

        child.send("/nonsense\r")
        child.expect_exact("unknown command /nonsense")
        child.expect_exact(PROMPT)

        child.sendcontrol("d")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus)
    shown = (tmp_path / "terminal.log").read_text()
    assert "Traceback" not in shown and "WARNING" not in shown  # vLLM's log lines stay in its log file
    history = (data_dir / "chat_history").read_text()
    assert "+Thanks!" in history and "+/set max_tokens 3000" in history and "half typed" not in history
