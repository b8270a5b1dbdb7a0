"""Background model servers that stay loaded between commands.

`vlm describe`, `chat` and `bench` use a model server kept in the background, so only the first
command of a while pays for loading the model. Each server is vLLM's own OpenAI server, exactly as
`vlm serve` runs it (`vlmcli.server`), run by a small detached supervisor process
(`python -m vlmcli.keepalive supervise KEY`) that:

- starts it on 127.0.0.1 at a free port with a random API key (VLLM_API_KEY, never in argv);
- follows its log to publish the start-up stage (import, weights, compile, KV cache, CUDA graphs);
- sends one warm-up request per media kind the profile allows, then marks the server ready;
- stops it and exits when it dies, on SIGTERM, or when it was idle longer than its keep-alive.

State is one JSON record per server in a private folder ($VLM_RUN_DIR, else $XDG_RUNTIME_DIR/vlm,
else ~/.cache/vlm/run; mode 0700, records 0600, since they hold the API key). Records are named by a
key: the profile name plus a hash of what makes two servers interchangeable. One lock file
serializes every change of the records, so two commands started at once start one server.

Who is using a server: vlm's middleware in the server writes its in-flight request count and the
time of the last request to an activity file; each command attached to a server holds a shared
flock on the server's `clients` file for as long as it runs. A server is idle when neither shows use.

Plain functions only (no Typer); commands use them through `vlmcli.session`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from vlmcli.errors import VlmError

RECORD_VERSION = 1
DEFAULT_KEEP_ALIVE_S = 300.0
LOOPBACK = "127.0.0.1"
POLL_S = 0.5
STOP_WAIT_S = 45.0  # the server's own grace period (30 s) plus time to exit
ACTIVITY_ENV = "VLM_ACTIVITY_FILE"
MIDDLEWARE = "vlmcli.server_middleware.TrackActivity"

# Start-up stages in the order vLLM goes through them, and log lines that show each one (vLLM 0.26
# to 0.33 on GPUs and the CPU). A stage only moves forward; lines that match nothing keep it.
STAGES = ("import", "engine", "weights", "compile", "KV cache", "CUDA graphs", "server", "warm-up")
STAGE_LABELS = {
    "import": "importing vLLM",
    "engine": "starting the engine processes",
    "weights": "loading weights",
    "compile": "compiling the model (torch.compile)",
    "KV cache": "sizing the KV cache",
    "CUDA graphs": "capturing CUDA graphs",
    "server": "starting the HTTP server",
    "warm-up": "warm-up requests",
}
STAGE_PATTERNS = (
    ("engine", re.compile(r"non-default args|Resolved architecture|Initializing a V1 LLM engine")),
    ("weights", re.compile(r"Starting to load model|Loading weights|Loading safetensors checkpoint|Loading model from")),
    ("compile", re.compile(r"Dynamo bytecode transform|Compiling a graph|torch\.compile takes|Directly load the compiled graph")),
    ("KV cache", re.compile(r"KV cache size|Available KV cache memory|Memory profiling takes")),
    ("CUDA graphs", re.compile(r"Capturing CUDA graphs?\b|Graph capturing finished")),
    ("server", re.compile(r"Starting vLLM (?:API )?server|Started server process|Application startup complete")),
)


def next_stage(current: str, line: str) -> str:
    """The stage after reading one log line: a later stage the line shows, else the current one."""
    rank = STAGES.index(current) if current in STAGES else 0
    for stage, pattern in STAGE_PATTERNS:
        if STAGES.index(stage) > rank and pattern.search(line):
            current, rank = stage, STAGES.index(stage)
    return current


# --- the state folder and records -----------------------------------------------------------------


def run_dir() -> Path:
    """The private folder for records and locks, created with mode 0700."""
    configured = os.environ.get("VLM_RUN_DIR")
    if configured:
        path = Path(configured).expanduser()
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "vlm"
    else:
        from vlmcli.engine import vlm_cache_dir

        path = vlm_cache_dir() / "run"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = path.stat()
    except OSError as exc:
        raise VlmError(f"cannot create vlm's state folder {path}: {exc.strerror or exc} (set VLM_RUN_DIR)") from None
    if status.st_uid != os.getuid():
        raise VlmError(f"vlm's state folder {path} belongs to another user; set VLM_RUN_DIR to a folder of yours")
    if status.st_mode & 0o077:
        path.chmod(0o700)  # records hold API keys: only this user may read them
    return path


def server_key(settings: Any) -> str:
    """Profile name plus a hash of everything that makes two servers interchangeable.

    The engine arguments include the model, served name, tiles, EVS and media limits. Sampling,
    video sampling and the media root are left out: vlm's client applies them per request (it reads
    media itself and sends them inline), so describe and bench with other flags share a server.
    """
    identity = {"python": sys.executable, "engine_args": settings.engine_args, "version": RECORD_VERSION}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{settings.profile_name}-{digest}"


@dataclass
class ServerRecord:
    """What a command needs to find, use, watch and stop one background server."""

    key: str
    profile: str
    model: str
    served_model_name: str
    instance: str  # random per start: names this server's activity and clients files
    pid: int  # the supervisor, leader of its own process group
    pid_start: int | None  # its start time from /proc: a reused pid does not match
    port: int
    api_key: str
    started_at: float
    last_client_at: float
    log_path: str
    supervisor_log_path: str
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    host: str = LOOPBACK
    server_pid: int | None = None  # vLLM's API server, leader of the server's process group
    server_pid_start: int | None = None
    state: str = "starting"  # starting | ready | failed | crashed
    stage: str = "import"
    stage_at: float = 0.0
    ready_at: float | None = None
    error: str | None = None
    version: int = RECORD_VERSION

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def record_path(key: str) -> Path:
    return run_dir() / f"{key}.json"


def activity_path(record: ServerRecord) -> Path:
    return run_dir() / f"{record.key}.{record.instance}.activity"


def clients_path(record: ServerRecord) -> Path:
    return run_dir() / f"{record.key}.{record.instance}.clients"


def write_private(path: Path, text: str) -> None:
    """Write a file readable by this user only, atomically (readers never see half a record)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def write_record(record: ServerRecord) -> None:
    write_private(record_path(record.key), json.dumps(asdict(record), indent=1) + "\n")


def read_record(key: str) -> ServerRecord | None:
    return _read_record_file(record_path(key))


def _read_record_file(path: Path) -> ServerRecord | None:
    try:
        return ServerRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def list_records() -> list[ServerRecord]:
    records = [_read_record_file(path) for path in sorted(run_dir().glob("*.json"))]
    return [record for record in records if record is not None]


def remove_record(record: ServerRecord) -> None:
    """Remove a record if it still names this server (a newer server may have the same key)."""
    current = read_record(record.key)
    if current is not None and current.instance == record.instance:
        record_path(record.key).unlink(missing_ok=True)


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    """One lock for every change of the records: checking and starting a server is atomic.

    One lock for all keys, not one per key: a command that stops another key's idle server while
    starting its own would otherwise take two locks, and two such commands could deadlock.
    """
    fd = os.open(run_dir() / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update_record(record: ServerRecord, **changes: Any) -> ServerRecord | None:
    """Change fields of a record under the lock; None if the record no longer names this server."""
    with state_lock():
        current = read_record(record.key)
        if current is None or current.instance != record.instance:
            return None
        current = replace(current, **changes)
        write_record(current)
        return current


# --- processes ------------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot) from /proc; None if there is no such
    process or it is a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after_name = text[text.rfind(")") + 2 :].split()
    if after_name[0] in ("Z", "X"):
        return None
    return int(after_name[19])  # field 22 of stat(5), counted from field 3


def process_alive(pid: int | None, start: int | None) -> bool:
    """Whether `pid` is still the process that was recorded (its start time guards against reuse)."""
    if not pid:
        return False
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): a signal 0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = process_start_time(pid)
    return now is not None and (start is None or now == start)


def supervisor_alive(record: ServerRecord) -> bool:
    return process_alive(record.pid, record.pid_start)


def _group_is_ours(pid: int | None, start: int | None) -> bool:
    """Whether the process group led by `pid` may be killed: its leader is the recorded process,
    or the leader is gone (a pid is not reused while its process group has members)."""
    if not pid:
        return False
    if process_start_time(pid) is None:
        return True
    return process_alive(pid, start)


def kill_groups(record: ServerRecord, sig: int = signal.SIGKILL) -> None:
    """Signal the supervisor's and the server's process groups (the engine processes included)."""
    for pid, start in ((record.server_pid, record.server_pid_start), (record.pid, record.pid_start)):
        if _group_is_ours(pid, start):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)


def group_pids(record: ServerRecord) -> list[int]:
    """Every live process of the supervisor's and the server's process groups (from /proc)."""
    groups = {pid for pid in (record.pid, record.server_pid) if pid}
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields_after = text[text.rfind(")") + 2 :].split()
        if fields_after[0] not in ("Z", "X") and int(fields_after[2]) in groups:
            found.append(int(entry.name))
    return found


def host_memory_bytes(pids: list[int]) -> int:
    """Resident memory of these processes."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return total


def gpu_memory_bytes(pids: list[int]) -> int | None:
    """GPU memory these processes hold, from nvidia-smi; None without nvidia-smi."""
    from vlmcli.gpu import nvidia_smi

    rows = nvidia_smi("--query-compute-apps=pid,used_memory")
    if rows is None:
        return None
    wanted = set(pids)
    total = 0
    for parts in rows:
        if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in wanted and parts[1].isdigit():
            total += int(parts[1]) << 20  # MiB
    return total


# --- who is using a server ------------------------------------------------------------------------


@dataclass
class Usage:
    in_flight: int  # requests the server is answering now
    attached: bool  # a vlm command is using the server (holds its clients lock)
    last_active_at: float  # the end of the last request, or when the last command left

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.attached


def read_activity(record: ServerRecord) -> tuple[int, float]:
    """(requests in flight, time of the last request) as the server's middleware wrote them."""
    try:
        count, when = activity_path(record).read_text().split()
        return int(count), float(when)
    except (OSError, ValueError):
        return 0, 0.0


def clients_attached(record: ServerRecord) -> bool:
    """Whether a command holds the server's clients lock (shared), tested without waiting."""
    try:
        fd = os.open(clients_path(record), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def usage(record: ServerRecord) -> Usage:
    in_flight, last_request = read_activity(record)
    last = max(last_request, record.last_client_at, record.ready_at or record.started_at)
    return Usage(in_flight, clients_attached(record), last)


def keep_alive_left(record: ServerRecord, now: float | None = None) -> float | None:
    """Seconds until an idle server stops itself; None while it is in use or starting."""
    use = usage(record)
    if use.busy or record.state != "ready":
        return None
    return record.keep_alive_s - ((now or time.time()) - use.last_active_at)


# --- commands: find, start, attach, stop -----------------------------------------------------------


@dataclass
class Attachment:
    """A command's hold on a background server; `detach()` when the command ends."""

    record: ServerRecord
    clients_fd: int
    started_here: bool

    def detach(self, keep_alive_s: float) -> None:
        """Let go: the keep-alive clock starts now (a keep-alive of 0 stops the server when idle)."""
        if self.clients_fd < 0:
            return
        try:
            changes: dict[str, Any] = {"last_client_at": time.time()}
            if keep_alive_s <= 0:
                changes["keep_alive_s"] = 0.0
            update_record(self.record, **changes)
        finally:
            os.close(self.clients_fd)
            self.clients_fd = -1


def attach(settings: Any, keep_alive_s: float, say: Callable[[str], None]) -> Attachment:
    """Find this profile's running server or start one; hold it until `detach()`.

    A record whose supervisor is dead (or whose pid was reused), or whose ready server does not
    answer, is cleaned up and replaced. Before a new server starts, idle servers of other settings
    are stopped to free GPU memory; one in use makes this a VlmError.
    """
    key = server_key(settings)
    while True:
        with state_lock():
            record = read_record(key)
            if record is not None and not _usable(record, say):
                kill_groups(record)
                remove_record(record)
                record = None
            started_here = False
            if record is None:
                to_stop = claim_idle_servers(exclude=key)
                if not to_stop:
                    record = spawn_supervisor(settings, key, keep_alive_s)
                    started_here = True
            if record is not None:
                fd = os.open(clients_path(record), os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH)
                changes: dict[str, Any] = {"last_client_at": time.time()}
                if keep_alive_s > 0:
                    changes["keep_alive_s"] = keep_alive_s
                record = replace(record, **changes)
                write_record(record)
                return Attachment(record, fd, started_here)
        # outside the lock: the stopped servers' supervisors take it to remove their records
        for other in to_stop:
            say(f"stopping the idle background server of profile {other.profile} (pid {other.pid}) to free memory for {settings.profile_name}")
        stop_servers(to_stop)


def _usable(record: ServerRecord, say: Callable[[str], None]) -> bool:
    """False (after a notice) for a record whose server is gone or broken."""
    what = f"the background server of profile {record.profile} (pid {record.pid})"
    if record.state == "failed" and not supervisor_alive(record):
        return False  # its start failed and was reported then; start afresh quietly
    if record.state == "crashed":
        say(f"{what} stopped{f': {record.error}' if record.error else ''}; starting a new one")
        return False
    if not supervisor_alive(record):
        say(f"{what} is gone; starting a new one")
        return False
    if record.state == "ready":
        from vlmcli.server import health_ok

        if not health_ok(record.url, timeout=5.0):
            say(f"{what} does not answer; starting a new one")
            return False
    return True


def claim_idle_servers(exclude: str) -> list[ServerRecord]:
    """Records of other live servers, removed so no command attaches to them, to be stopped.

    A new model usually does not fit beside another one in GPU memory. A server in use (requests in
    flight, a command attached, or still starting for another command) is never stopped: VlmError.
    Call with the state lock held.
    """
    others = []
    for record in list_records():
        if record.key == exclude:
            continue
        if not supervisor_alive(record):
            kill_groups(record)
            remove_record(record)
            continue
        use = usage(record)
        if use.busy or record.state == "starting":
            doing = f"{use.in_flight} request(s) in flight" if use.in_flight else "in use by another command"
            raise VlmError(
                f"the background server of profile {record.profile} is {doing}, and a second model may not fit "
                f"beside it; wait for it, stop it with `vlm stop {record.profile}`, or run with --in-process"
            )
        others.append(record)
    for record in others:
        record_path(record.key).unlink(missing_ok=True)
    return others


def stop_servers(records: list[ServerRecord], wait_s: float = STOP_WAIT_S) -> None:
    """SIGTERM each supervisor (it stops its server cleanly), wait, then kill what is left."""
    for record in records:
        if supervisor_alive(record):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(record.pid, signal.SIGTERM)
        else:
            kill_groups(record)
    deadline = time.monotonic() + wait_s
    for record in records:
        while time.monotonic() < deadline and (supervisor_alive(record) or group_pids(record)):
            time.sleep(0.1)
        kill_groups(record)


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def spawn_supervisor(settings: Any, key: str, keep_alive_s: float) -> ServerRecord:
    """Start the detached supervisor and write the server's first record (call with the lock held)."""
    from vlmcli.engine import engine_log_path

    logs = engine_log_path().parent
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"server-{key}.log"
    supervisor_log = logs / f"supervisor-{key}.log"
    now = time.time()
    payload = {"settings": settings, "key": key}
    with open(supervisor_log, "w", encoding="utf-8") as log:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "vlmcli.keepalive", "supervise", key], stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise VlmError(f"cannot start a background server: {exc}") from None
    record = ServerRecord(
        key=key, profile=settings.profile_name, model=settings.model,
        served_model_name=str(settings.engine_args.get("served_model_name") or settings.profile_name),
        instance=secrets.token_hex(4), pid=process.pid, pid_start=process_start_time(process.pid),
        port=free_port(), api_key=secrets.token_urlsafe(32), started_at=now, last_client_at=now,
        log_path=str(log_path), supervisor_log_path=str(supervisor_log),
        keep_alive_s=keep_alive_s if keep_alive_s > 0 else DEFAULT_KEEP_ALIVE_S, stage_at=now,
    )
    write_record(record)
    # The settings go through a pipe, not a file: the supervisor reads them once at start.
    try:
        process.stdin.write(pickle.dumps(payload))
        process.stdin.close()
    except OSError:
        pass  # it died at once; the waiting command sees that
    return record


def running_servers() -> list[ServerRecord]:
    """Records of servers that still run (or whose failure is still to be reported); records of
    vanished supervisors are cleaned up on the way."""
    alive = []
    with state_lock():
        for record in list_records():
            if supervisor_alive(record) or record.state in ("failed", "crashed"):
                alive.append(record)
            else:
                kill_groups(record)
                remove_record(record)
    return alive


def server_status(record: ServerRecord, now: float | None = None) -> dict[str, Any]:
    """What `vlm ps` shows of one server (JSON-ready)."""
    now = now or time.time()
    use = usage(record)
    pids = group_pids(record)
    left = keep_alive_left(record, now)
    return {
        "profile": record.profile,
        "model": record.model,
        "state": record.state,
        "stage": record.stage,
        "url": record.url,
        "pid": record.pid,
        "server_pid": record.server_pid,
        "host_memory_bytes": host_memory_bytes(pids),
        "gpu_memory_bytes": gpu_memory_bytes(pids),
        "in_flight": use.in_flight,
        "attached": use.attached,
        "idle_s": None if use.busy else max(0.0, now - use.last_active_at),
        "keep_alive_s": record.keep_alive_s,
        "keep_alive_left_s": None if left is None else max(0.0, left),
        "started_at": record.started_at,
        "ready_at": record.ready_at,
        "error": record.error,
        "log": record.log_path,
        "key": record.key,
    }


def select_servers(profile: str | None, every: bool) -> list[ServerRecord]:
    """The servers `vlm stop` means: all, one profile's, or the only one; VlmError if none match."""
    from vlmcli.errors import UsageError

    records = running_servers()
    if every:
        chosen = records
    elif profile:
        chosen = [record for record in records if record.profile == profile]
    elif len(records) > 1:
        names = ", ".join(sorted({record.profile for record in records}))
        raise UsageError(f"{len(records)} background servers run ({names}): name a profile or pass --all")
    else:
        chosen = records
    if not chosen:
        running = ", ".join(sorted({record.profile for record in records}))
        which = f" of profile {profile}" if profile else ""
        raise VlmError(f"no background server{which} is running" + (f" (running: {running})" if running else ""))
    return chosen


def stop_selected(records: list[ServerRecord]) -> None:
    """Stop these servers now (`vlm stop`), even with requests in flight: the user asked."""
    with state_lock():
        for record in records:
            remove_record(record)
    stop_servers(records)


# --- the supervisor -------------------------------------------------------------------------------


class Supervisor:
    """Runs one vLLM server for one record until it dies, is told to stop, or stays idle too long."""

    def __init__(self, key: str, settings: Any):
        self.key = key
        self.settings = settings
        record = read_record(key)
        if record is None or record.pid != os.getpid():
            raise SystemExit(f"vlm supervisor: no record for {key} names this process")
        self.record = record
        self.stop_signal: int | None = None
        self.server: Any = None
        self.log_offset = 0
        self.partial = ""

    def say(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    def set(self, **changes: Any) -> bool:
        updated = update_record(self.record, **changes)
        if updated is not None:
            self.record = updated
        return updated is not None

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: setattr(self, "stop_signal", signum))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        write_private(activity_path(self.record), f"0 {time.time()}\n")
        try:
            return self._run()
        finally:
            if self.server is not None:
                self.say("stopping the vLLM server")
                self.server.stop()
            with state_lock():
                current = read_record(self.key)
                # a failed or crashed record stays, so the next command can say why
                if current is not None and current.instance == self.record.instance and current.state not in ("failed", "crashed"):
                    remove_record(current)
            activity_path(self.record).unlink(missing_ok=True)
            clients_path(self.record).unlink(missing_ok=True)
            self.say("exited")

    def _run(self) -> int:
        from vlmcli.server import ServerProcess

        command = background_command(self.settings, self.record)
        self.say(f"starting: {command.shell()}")
        try:
            self.server = ServerProcess(command, log_path=Path(self.record.log_path))
        except VlmError as exc:
            self.set(state="failed", error=str(exc))
            return 1
        pid = self.server.process.pid
        self.set(server_pid=pid, server_pid_start=process_start_time(pid))
        if not self._wait_for_health():
            return 0 if self.stop_signal else 1
        self.set(stage="warm-up", stage_at=time.time())
        self.say("warming up")
        try:
            import asyncio

            asyncio.run(warm_up(self.settings, self.record))
        except Exception as exc:  # any failure here means the server cannot answer real requests
            if self.server.process.poll() is not None:
                return self._failed("failed")
            self.set(state="failed", error=f"warm-up request failed: {exc}")
            return 1
        if self.stop_signal:
            return 0
        self.set(state="ready", ready_at=time.time(), stage="ready")
        self.say(f"ready in {time.time() - self.record.started_at:.1f} s on {self.record.url}")
        return self._serve()

    def _wait_for_health(self) -> bool:
        from vlmcli.server import health_ok

        while not self.stop_signal:
            self._follow_log()
            if self.server.process.poll() is not None:
                self._failed("failed")
                return False
            if read_record(self.key) is None:
                return False  # removed (vlm stop): nobody will use this server
            if health_ok(self.record.url, timeout=1.0):
                self._follow_log()
                return True
            time.sleep(POLL_S)
        return False

    def _follow_log(self) -> None:
        """Read what the server logged since last time and move the stage forward."""
        try:
            with open(self.record.log_path, encoding="utf-8", errors="replace") as log:
                log.seek(self.log_offset)
                text = log.read()
                self.log_offset = log.tell()
        except OSError:
            return
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        stage = self.record.stage
        for line in lines:
            stage = next_stage(stage, line)
        if stage != self.record.stage:
            self.say(f"stage: {stage}")
            self.set(stage=stage, stage_at=time.time())

    def _failed(self, state: str) -> int:
        error = str(self.server.failure())
        self.say(error)
        self.set(state=state, error=error)
        return 1

    def _serve(self) -> int:
        """Until the server dies, a stop signal comes, the record is removed, or it idles too long."""
        while not self.stop_signal:
            time.sleep(POLL_S)
            if self.server.process.poll() is not None:
                return self._failed("crashed")
            record = read_record(self.key)
            if record is None or record.instance != self.record.instance:
                self.say("record removed: stopping")
                return 0
            self.record = record
            left = keep_alive_left(record)
            if left is not None and left <= 0 and self._expire():
                self.say(f"idle for {record.keep_alive_s:g} s (keep-alive): stopping")
                return 0
        self.say(f"signal {self.stop_signal}: stopping")
        return 0

    def _expire(self) -> bool:
        """Remove the record if the server is still idle, under the lock, so no command attaches
        to a server that is about to stop."""
        with state_lock():
            record = read_record(self.key)
            if record is None or record.instance != self.record.instance:
                return True
            left = keep_alive_left(record)
            if left is None or left > 0:
                return False
            remove_record(record)
            return True


def background_command(settings: Any, record: ServerRecord) -> Any:
    """`vlm serve`'s vLLM command for a background server: loopback, the record's port and key,
    the activity middleware, and no local media (vlm's client sends media inline)."""
    from vlmcli.server import build_command

    no_media = run_dir() / "no-local-media"
    no_media.mkdir(mode=0o700, exist_ok=True)
    command = build_command(replace(settings, media_root=no_media), LOOPBACK, record.port, record.api_key)
    command.argv += ["--middleware", MIDDLEWARE]
    # Stage detection reads vLLM's INFO lines, whatever level the starting command chose for itself.
    command.env.update({ACTIVITY_ENV: str(activity_path(record)), "VLLM_LOGGING_LEVEL": "INFO"})
    return command


def warm_up_media(settings: Any) -> list[Any]:
    """One small generated item per media kind the profile allows (seeded noise, not blank)."""
    import numpy as np
    from PIL import Image

    from vlmcli.media import ImageInput, VideoClip

    rng = np.random.default_rng(0)
    items: list[Any] = []
    if settings.max_images > 0:
        items.append(ImageInput("warm-up image", Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8))))
    if settings.max_videos > 0 and settings.family.video_placeholder is not None:
        frames = rng.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
        items.append(VideoClip("warm-up video", frames, source_fps=2.0, frame_indices=[0, 1, 2, 3], total_frames=4))
    return items


async def warm_up(settings: Any, record: ServerRecord) -> None:
    """Send the warm-up requests through vlm's own client, the path real requests take."""
    from vlmcli.client import RemoteEngine
    from vlmcli.errors import RequestError
    from vlmcli.request import Turn

    engine = await RemoteEngine.connect(settings, record.url, api_key=record.api_key)
    try:
        for item in [None, *warm_up_media(settings)]:
            turn = Turn("user", "Describe this.", [item] if item is not None else [])
            try:
                async for _ in engine.chat([turn], max_tokens=2):
                    pass
            except RequestError as exc:  # the server answered: it works, this input did not suit it
                print(f"warm-up request ({item.kind if item else 'text'}) refused: {exc}", flush=True)
    finally:
        await engine.aclose()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "supervise":
        print("usage: python -m vlmcli.keepalive supervise KEY (started by vlm itself)", file=sys.stderr)
        return 2
    payload = pickle.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    return Supervisor(argv[1], payload["settings"]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
