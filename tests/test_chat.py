"""`vlm chat`: the REPL core with a fake engine (narrow unit tests), then a scripted session through
the real command and the real vLLM engine on the CPU."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from conftest import QWEN
from test_serve import API_KEY, server  # noqa: F401  (the module's real `vlm serve`, started once)

from vlmcli.chat import (
    Attachment,
    ChatInputError,
    ChatSession,
    Conversation,
    Message,
    conversation_from_json,
    media_paths_in,
    parse_command,
    parse_setting,
    parse_video_args,
    read_blocks,
)
from vlmcli.engine import Delta
from vlmcli.errors import MediaError, RequestError


# ---------------------------------------------------------------------------------------------
# Unit tests: a fake engine, a recording UI

class FakeEngine:
    """Answers "answer N" word by word; refuses prompts over `limit` words like vLLM does."""

    def __init__(self, limit: int = 10_000, words: int = 3, delay: float = 0.0):
        self.limit, self.words, self.delay = limit, words, delay
        self.calls: list[tuple[list, str | None, dict]] = []
        self.closed_early = 0

    async def chat(self, turns, *, system_prompt=None, **sampling):
        self.calls.append(([(t.role, t.text, len(t.media)) for t in turns], system_prompt, sampling))
        length = sum(len(t.text.split()) for t in turns)
        if length > self.limit:
            raise RequestError(f"the prompt ({length} tokens) is longer than max_model_len {self.limit}: shorten it")
        finished = False
        try:
            for index in range(self.words):
                await asyncio.sleep(self.delay)
                yield Delta(f"w{index} ")
            finished = True
            yield Delta("", finished=True, prompt_tokens=length, output_tokens=self.words, finish_reason="length")
        finally:
            if not finished:
                self.closed_early += 1


class RecordingUI:
    def __init__(self):
        self.notices, self.errors, self.outputs, self.answers = [], [], [], []

    def notice(self, text):
        self.notices.append(text)

    def error(self, text):
        self.errors.append(text)

    def output(self, text):
        self.outputs.append(text)

    def answer_start(self):
        self.answers.append("")

    def answer_delta(self, text, full):
        self.answers[-1] = full

    def answer_end(self, stats, show_stats, failed=False):
        pass


class FakeItem:
    def __init__(self, kind: str):
        self.kind = kind
        self.frame_indices = [0, 1, 2]


def fake_loader(ref, sampling, root):
    if "missing" in ref:
        raise MediaError(f"{ref}: no such file")
    return FakeItem("video" if ref.endswith(".mp4") else "image")


@pytest.fixture
def settings(monkeypatch):
    from vlmcli.profiles import load_profile
    from vlmcli.settings import resolve_settings

    monkeypatch.setenv("VLM_TINY_MODELS_DIR", "/nonexistent")
    return resolve_settings(load_profile(QWEN))


def make_session(settings, **engine_args):
    ui = RecordingUI()
    engine = FakeEngine(**engine_args)
    return ChatSession(engine, settings, ui, loader=fake_loader), engine, ui


def run(session, *lines):
    async def go():
        for line in lines:
            if not await session.handle(line):
                return False
        return True

    return asyncio.run(go())


def test_parse_command():
    assert parse_command("hello /help") is None
    assert parse_command("/tmp/photo.png what is this?") is None  # a message starting with a path
    command = parse_command("/video 'my clip.mp4' --fps 2")
    assert (command.name, command.args) == ("video", ["my clip.mp4", "--fps", "2"])
    assert parse_command("/system  Be brief.  ").rest == "Be brief."
    assert parse_command("/quit").name == "exit" and parse_command("/?").name == "help"
    with pytest.raises(ChatInputError, match="unknown command /frobnicate; /help"):
        parse_command("/frobnicate now")
    with pytest.raises(ChatInputError, match="/image: No closing quotation"):
        parse_command("/image 'unclosed")
    assert parse_video_args(["a.mp4", "--num-frames", "8"]) == ("a.mp4", None, 8)
    for bad, message in ((["a.mp4", "--fps", "0"], "--fps must be a number > 0"), ([], "usage"),
                         (["a.mp4", "b.mp4"], "one video"), (["a.mp4", "--speed", "2"], "unknown option --speed")):
        with pytest.raises(ChatInputError, match=message):
            parse_video_args(bad)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [("temperature", "0.7", 0.7), ("top_p", "1", 1.0), ("top_k", "off", -1), ("top_k", "40", 40),
     ("max_tokens", "4096", 4096), ("repetition_penalty", "1.1", 1.1), ("ignore_eos", "on", True)],
)
def test_set_accepts(key, text, expected):
    assert parse_setting(key, text, 4096) == expected


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [("temperature", "2.5", r"must be in \[0, 2\]"), ("temperature", "hot", "must be a number"),
     ("top_p", "0", r"must be in \(0, 1\]"), ("top_k", "0", "at least 1"), ("max_tokens", "4097", r"\[1, 4096\]"),
     ("max_tokens", "1.5", "whole number"), ("repetition_penalty", "-1", r"\(0, 2\]"), ("ignore_eos", "maybe", "on or off"),
     ("seed", "1", "unknown key 'seed'")],
)
def test_set_rejects(key, text, message):
    with pytest.raises(ChatInputError, match=message):
        parse_setting(key, text, 4096)


def test_set_goes_to_the_engine_and_default_resets(settings):
    session, engine, ui = make_session(settings)
    run(session, "/set temperature 0.5", "/set max_tokens 9", "/set max_tokens default", "hi", "/set top_p 7")
    assert engine.calls[-1][2] == {"temperature": 0.5}
    assert ui.errors == ["/set top_p: must be in (0, 1] (got '7')"]
    run(session, "/set")
    assert "temperature=0.5" in ui.outputs[-1] and "max_tokens=24" in ui.outputs[-1]


def test_turns_undo_retry(settings):
    session, engine, ui = make_session(settings)
    run(session, "first", "second")
    assert [(m.role, m.text) for m in session.conversation.messages] == [
        ("user", "first"), ("assistant", "w0 w1 w2 "), ("user", "second"), ("assistant", "w0 w1 w2 ")]
    assert engine.calls[-1][0] == [("user", "first", 0), ("assistant", "w0 w1 w2 ", 0), ("user", "second", 0)]

    run(session, "/retry")  # the same conversation is sent again without the last answer
    assert engine.calls[-1][0] == engine.calls[-2][0]
    assert len(session.conversation.messages) == 4

    run(session, "/undo")
    assert [m.text for m in session.conversation.messages] == ["first", "w0 w1 w2 "]
    run(session, "/undo", "/undo", "/retry")
    assert session.conversation.messages == []
    assert ui.errors == ["/undo: nothing to undo", "/retry: nothing to retry yet"]
    assert session.last_stats.output_tokens == 3 and session.last_stats.prompt_tokens > 0


def test_media_joins_the_next_message(settings, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    session, engine, ui = make_session(settings)
    run(session, "/image a.png b.png", f"compare these with {photo}, please", "/image missing.png", "/video c.mp4 --fps 1")
    assert engine.calls[-1][0] == [("user", f"compare these with {photo}, please", 3)]
    assert ui.errors == ["missing.png: no such file"]
    assert [a.ref for a in session.pending] == ["c.mp4"] and session.pending[0].fps == 1.0
    run(session, "/video d.mp4")  # the tiny profile allows one video per conversation
    assert "allows 1 video(s) per conversation" in ui.errors[-1]
    run(session, "/image e.mp4")
    assert ui.errors[-1] == "e.mp4: is a video; use /video"
    run(session, "/undo")  # pending attachments go first
    assert session.pending == [] and len(session.conversation.messages) == 2


def test_media_paths_in_text(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "my clip.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    text = f"what's in {tmp_path}/a.png? and '{tmp_path}/my clip.mp4' or {tmp_path}/notes.txt or {tmp_path}/gone.png"
    assert media_paths_in(text) == [f"{tmp_path}/a.png"]  # the apostrophe makes it plain words
    assert media_paths_in(f"see '{tmp_path}/my clip.mp4' and ({tmp_path}/a.png)") == [
        f"{tmp_path}/my clip.mp4", f"{tmp_path}/a.png"]


def test_save_load_round_trip(settings, tmp_path):
    session, engine, ui = make_session(settings)
    run(session, "/system Be brief.", "/set temperature 0.3", "/image a.png", "look", "/video c.mp4 --num-frames 4", "and this")
    first, second = tmp_path / "one.json", tmp_path / "two.json"
    run(session, f"/save {first}")
    data = json.loads(first.read_text())
    assert data["system"] == "Be brief." and data["sampling"] == {"temperature": 0.3}
    assert data["messages"][0]["media"][0]["ref"].endswith("a.png")
    assert data["messages"][2]["media"] == [{"ref": "c.mp4", "kind": "video", "num_frames": 4}]

    other, _, _ = make_session(settings)
    run(other, f"/load {first}", f"/save {second}")
    assert first.read_text() == second.read_text()
    assert isinstance(other.conversation.messages[0].media[0].item, FakeItem)  # media read again
    assert other.sampling == {"temperature": 0.3} and other.conversation.system == "Be brief."


def test_load_rejects_bad_files_in_one_line(settings, tmp_path):
    session, _, ui = make_session(settings)
    run(session, "hi")
    bad = tmp_path / "bad.json"
    for content, message in (("{not json", "Expecting property name"), ('{"x": 1}', "not a vlm chat file"),
                             ('{"vlm_chat": 1, "messages": [{"role": "bot", "text": "x"}]}', "message 1: needs a role"),
                             ('{"vlm_chat": 1, "sampling": {"top_p": 9}}', "top_p: must be in")):
        bad.write_text(content)
        run(session, f"/load {bad}")
        assert message in ui.errors[-1] and "\n" not in ui.errors[-1]
    run(session, f"/load {tmp_path / 'none.json'}", "/save")
    assert "cannot read" in ui.errors[-2] and ui.errors[-1] == "/save: usage /save FILE"
    assert len(session.conversation.messages) == 2  # a failed load keeps the conversation

    bad.write_text(json.dumps({"vlm_chat": 1, "messages": [
        {"role": "user", "text": "x", "media": [{"ref": "missing.png", "kind": "image"}, {"ref": "ok.png", "kind": "image"}]}]}))
    run(session, f"/load {bad}")
    assert "missing.png: no such file (left out" in ui.errors[-1]
    assert [a.ref for a in session.conversation.messages[0].media] == ["ok.png"]


def test_too_long_drops_oldest_exchanges(settings):
    session, engine, ui = make_session(settings, limit=25)
    run(session, "one " * 8, "two " * 8)
    run(session, "three " * 8)  # 8+3+8+3+8 words > 25: the first exchange goes
    assert [m.text.split()[0] for m in session.conversation.messages] == ["two", "w0", "three", "w0"]
    assert ui.notices[-1] == "dropped the 1 oldest exchange(s) to stay within max_model_len 4096"
    run(session, "four " * 30)  # alone too long: not kept, the rest stays
    assert [m.text.split()[0] for m in session.conversation.messages] == ["two", "w0", "three", "w0"]
    assert "your last message alone (30 tokens) is longer than max_model_len 4096" in ui.errors[-1]
    assert "/clear" in ui.errors[-1]


def test_stop_cancels_the_stream_and_keeps_the_partial_answer(settings):
    session, engine, ui = make_session(settings, words=1000, delay=0.01)

    async def go():
        answer = asyncio.create_task(session.handle("talk forever"))
        while not ui.answers or ui.answers[-1].count("w") < 3:
            await asyncio.sleep(0.01)
        assert session.stop()
        await answer

    asyncio.run(go())
    assert engine.closed_early == 1  # the generator was closed: vLLM aborts the request there
    assert session.last_stats.stopped and 3 <= session.last_stats.output_tokens < 1000
    assert session.conversation.messages[-1].text.startswith("w0 w1 w2 ")
    assert session.stop() is False


def test_conversation_json_helpers():
    conversation = Conversation([Message("user", "a", [Attachment("/x.png", "image")]), Message("assistant", "b")], "sys")
    data = json.loads(json.dumps(conversation.to_json("p", {"top_k": 5})))
    loaded, sampling = conversation_from_json(data)
    assert loaded == conversation and sampling == {"top_k": 5}


def test_read_blocks():
    lines = ['hello\n', '"""\n', 'line one\n', '\n', 'line two"""\n', '"""single"""\n', '"""open\n', 'never closed\n']
    assert list(read_blocks(iter(lines))) == ['hello', '"""\nline one\n\nline two"""', '"""single"""', '"""open\nnever closed"""']


# ---------------------------------------------------------------------------------------------
# Through the real command and engine

def stdout_answers(stdout: str) -> list[str]:
    return [block for block in stdout.split("\n\n") if block.strip()]


@pytest.mark.engine
def test_scripted_session_real_engine(run_vlm, tiny_models_dir, media, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    long_word = "the "  # one token each in the tiny tokenizer
    script = "\n".join([
        "Hello, who are you?",
        f"/image {media['image']}",
        "What is in this picture?",
        f"And in {media['video']} ?",                          # a path in the message
        "/set max_tokens 5",
        "/set temperature 9",                                  # bad value
        "/retry",
        "/stats",
        "/undo",
        "/frobnicate",                                         # unknown command
        f"/image {media['image'].parent / 'missing.png'}",     # missing file
        f"/video {media['corrupt_video']}",                    # unreadable file
        f"/save {first}",
        "/clear",
        f"/load {first}",
        f"/save {second}",
        '"""',
        "A message",
        "on two lines",
        '"""',
        "/system You are terse.",
        "/clear",
        long_word * 1500,
        long_word * 1500,
        long_word * 1500,                                      # the three no longer fit: trimmed
        long_word * 5000,                                      # alone too long: refused
        "still here?",
        "/exit",
        "never sent",
    ]) + "\n"
    result = run_vlm("chat", "--profile", QWEN, "--stats", str(media["image2"]), input=script,
                     env={"VLM_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    err = result.stderr

    # answers: 3 turns, /retry, /stats output, multi-line, 3 long ones, "still here?"
    stats = re.findall(r"^vlm: stats: (\d+) prompt \+ (\d+) output tokens · first token ([\d.]+) s", err, re.M)
    assert len(stats) == 9, err
    prompts = [int(p) for p, _, _ in stats]
    assert prompts[1] > prompts[0] + 40  # the image added its tokens
    assert prompts[2] > prompts[1] + 40  # and the video's frames theirs
    assert prompts[3] == prompts[2] and int(stats[3][1]) <= 5  # /retry: same prompt, new max_tokens
    assert "attached image" in err and f"attached video {media['video']}, 4 frames" in err
    assert f"attached image {media['image']}" in err and f"attached image {media['image2']}" in err

    errors = [line for line in err.splitlines() if line.startswith("vlm: error:")]
    assert errors[0] == "vlm: error: /set temperature: must be in [0, 2] (got '9')"
    assert errors[1] == "vlm: error: unknown command /frobnicate; /help lists the commands"
    assert errors[2].endswith("missing.png: no such file")
    assert "broken.mp4: not a readable video" in errors[3]
    too_long = re.search(r"your last message alone \((\d+) (?:input )?tokens\) is longer than max_model_len 4096", errors[4])
    assert too_long and int(too_long[1]) > 4096, errors[4]  # vLLM may stop counting at 4097
    assert "/clear" in errors[4]
    assert len(errors) == 5
    assert "dropped the 1 oldest exchange(s) to stay within max_model_len 4096" in err

    # /save, /load, /save gives the same file: the first two exchanges (the image kept by path)
    saved = json.loads(first.read_text())
    assert first.read_text() == second.read_text()
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant", "user", "assistant"]
    assert saved["messages"][0]["media"] == [{"ref": str(media["image2"]), "kind": "image"}]
    assert saved["messages"][2]["media"] == [{"ref": str(media["image"]), "kind": "image"}]
    assert saved["sampling"] == {"max_tokens": 5}

    out = result.stdout
    assert "\x1b[" not in out
    assert "5 output tokens" in out  # /stats goes to stdout: it was asked for
    assert "never sent" not in out
    blocks = stdout_answers(out)
    assert len(blocks) >= 9, out  # the answers (random text may itself hold blank lines)
    # the answer to the last message came after the refusal: the chat went on
    assert int(stats[-1][0]) < 4096 and int(stats[-1][0]) > 1500


@pytest.mark.engine
def test_chat_through_a_server_matches_in_process(run_vlm, server, media):
    """`--server` (or VLM_SERVER): the same conversation gives the same prompts and greedy answers."""
    script = "\n".join([
        "Hello", f"/image {media['image']}", "What is it?", f"/video {media['video']} --num-frames 4",
        "And this?", "/set max_tokens 4", "/set top_k 5", "/retry",
    ]) + "\n"
    runs = {}
    for mode, env in (("server", {"VLM_SERVER": server.url, "VLM_API_KEY": API_KEY}), ("in-process", {})):
        result = run_vlm("chat", "--profile", QWEN, "--stats", input=script, env=env)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "vlm: error" not in result.stderr
        stats = re.findall(r"^vlm: stats: (\d+) prompt \+ (\d+) output tokens", result.stderr, re.M)
        runs[mode] = (stats, result.stdout)
    assert len(runs["server"][0]) == 4
    assert runs["server"] == runs["in-process"]
