"""vlm's own settings file, `config.yaml` beside the user profiles folder, and the duration syntax.

The file is optional. Today it holds how model commands get their model:

    background: true      # use (or start) a background model server; false = load in this process
    keep_alive: 5m        # how long a background server stays loaded after its last request

A mistake gives one line naming the file and the key, as profile errors do.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from vlmcli.errors import UsageError

CONFIG_FILE = "config.yaml"
KNOWN_KEYS = ("background", "keep_alive")
DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_PATTERN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class DurationError(ValueError):
    """Not a duration like 30s, 10m, 1h or 0."""


def parse_duration(text: str | int | float) -> float:
    """Seconds from '30s', '10m', '1h', '2d', '1h30m', '90' (seconds) or 0."""
    if isinstance(text, bool):
        raise DurationError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise DurationError(f"must not be negative (got {text})")
        return float(text)
    spelled = str(text).strip().lower()
    parts = DURATION_PATTERN.findall(spelled)
    if not spelled or "".join(number + unit for number, unit in parts) != spelled.replace(" ", ""):
        raise DurationError(f"not a duration like 30s, 10m, 1h or 0 (got {text!r})")
    if len(parts) > 1 and any(unit == "" for _, unit in parts):
        raise DurationError(f"give each number a unit, e.g. 1h30m (got {text!r})")
    return sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    """A short human duration: 45s, 4m05s, 2h10m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def parse_switch(text: str, where: str) -> bool:
    """1/true/yes/on or 0/false/no/off."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UsageError(f"{where}: 1 or 0 (true/false, yes/no, on/off) (got {text!r})")


def config_dir() -> Path:
    """The folder that holds `profiles/` (and `config.yaml`): $VLM_CONFIG_DIR or the platform's."""
    from vlmcli.profiles import user_profiles_dir

    return user_profiles_dir().parent


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


@dataclass(frozen=True)
class Config:
    """Values from config.yaml; None where the file does not set them."""

    background: bool | None = None
    keep_alive_s: float | None = None


def load_config(path: Path | None = None) -> Config:
    """Read and check config.yaml; a missing file is an empty config."""
    from vlmcli.profiles import read_yaml

    path = path or config_path()
    data = read_yaml(path, UsageError, "the config file", missing_ok=True)
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the config file must be a YAML mapping of keys to values")
    for key in data:
        if key not in KNOWN_KEYS:
            raise UsageError(f"{path}: {key}: unknown key; allowed here: {', '.join(KNOWN_KEYS)}")
    background = data.get("background")
    if background is not None and not isinstance(background, bool):
        raise UsageError(f"{path}: background: true or false (got {background!r})")
    keep_alive_s = None
    if data.get("keep_alive") is not None:
        try:
            keep_alive_s = parse_duration(data["keep_alive"])
        except DurationError as exc:
            raise UsageError(f"{path}: keep_alive: {exc}") from None
    return Config(background=background, keep_alive_s=keep_alive_s)


def env_value(name: str) -> str | None:
    """An environment variable, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or None
