"""Where the server and the key come from: `CALLFS_URL` / `CALLFS_KEY`, or a named profile in
`~/.config/callfs/config.toml` (`$XDG_CONFIG_HOME/callfs/config.toml`; `CALLFS_CONFIG` names
another file):

    default = "local"              # the profile used when none is named (optional)

    [profiles.local]
    url = "http://127.0.0.1:8000"
    key = "cfs_..."
    # retries = 3                  # optional: retries of safe requests
    # timeout = 300                # optional: seconds to wait for an answer
    # verify = "/etc/ssl/my-ca.pem"  # optional: a CA bundle, or false

A profile named with `--profile` (or `CALLFS_PROFILE`) wins over the environment; otherwise
`CALLFS_URL` and `CALLFS_KEY` win over the default profile. Keep the file private (chmod 600):
it holds keys.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The server or key is missing or the config file is unusable: one line for the user."""


@dataclass(frozen=True)
class Settings:
    url: str
    key: str
    retries: int = 3
    timeout: float = 300.0
    verify: bool | str = True

    def client_options(self) -> dict[str, Any]:
        return {"retries": self.retries, "timeout": (10.0, self.timeout), "verify": self.verify}


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CALLFS_CONFIG"):
        return Path(env["CALLFS_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "callfs" / "config.toml"


def load_file(path: Path) -> dict[str, Any]:
    """The parsed config file, {} when there is none."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None


def resolve(profile: str | None = None, *, url: str | None = None, key: str | None = None,
            retries: int | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings to connect with. Explicit `url`/`key`/`retries` win over everything."""
    env = os.environ if env is None else env
    path = config_path(env)
    data = load_file(path)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of profiles")
    named = profile or env.get("CALLFS_PROFILE")
    chosen: dict[str, Any] = {}
    if named:
        if named not in profiles:
            raise ConfigError(f"no profile {named!r} in {path}")
        chosen = profiles[named]
    elif isinstance(data.get("default"), str) and data["default"] in profiles:
        chosen = profiles[data["default"]]
    if not isinstance(chosen, dict):
        raise ConfigError(f"{path}: a profile must be a table (url, key)")

    def pick(field: str, variable: str) -> Any:
        if named:
            return chosen.get(field) or env.get(variable)
        return env.get(variable) or chosen.get(field)

    url = url or pick("url", "CALLFS_URL")
    key = key or pick("key", "CALLFS_KEY")
    if not url:
        raise ConfigError("no server: set CALLFS_URL (e.g. http://127.0.0.1:8000) or use a "
                          f"profile in {path} (--profile)")
    if not key:
        raise ConfigError(f"no API key: set CALLFS_KEY or use a profile in {path} (--profile)")
    try:
        settings = Settings(
            url=str(url), key=str(key),
            retries=int(retries if retries is not None else
                         env.get("CALLFS_RETRIES") or chosen.get("retries", 3)),
            timeout=float(chosen.get("timeout", 300.0)),
            verify=chosen.get("verify", True))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"retries/timeout must be numbers: {exc}") from None
    if not settings.url.startswith(("http://", "https://")):
        raise ConfigError(f"{settings.url!r}: the server URL must start with http:// or "
                          "https://")
    return settings
