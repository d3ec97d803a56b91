"""Where the configuration's values come from, as pydantic-settings sources.

The environment (``KEEPER_SECTION__FIELD``, never the secrets), the secrets (``KEEPER_PRIVATE_KEY``
and ``KEEPER_KEYSTORE_PASSWORD``, or a file named by ``..._FILE``) and the TOML file, read strictly.
Each raises ``ConfigError`` with one line; none echoes a secret.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from keeper.errors import ConfigError

ENV_PREFIX = "KEEPER_"
SECRET_KEYS = ("private_key", "keystore_password")


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


class EnvSource(EnvSettingsSource):
    """``KEEPER_SECTION__FIELD`` variables from the given environment; never the secrets."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ  # read by _load_env_vars, which the base __init__ calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Only nested names: a stray KEEPER_NETWORK=... in a shell must not replace a section.
        nested = {k: v for k, v in self._environ.items()
                  if k.upper().startswith(ENV_PREFIX) and "__" in k[len(ENV_PREFIX):]}
        return parse_env_vars(nested, self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in super().__call__().items() if k != "secrets"}


class SecretsSource(PydanticBaseSettingsSource):
    """``KEEPER_PRIVATE_KEY`` and ``KEEPER_KEYSTORE_PASSWORD``, or a file named by ``…_FILE``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole section

    def __call__(self) -> dict[str, Any]:
        found = {k: v for k in SECRET_KEYS if (v := _read_secret(self._environ, k)) is not None}
        key = found.get("private_key")
        # The signer checks the digits; a short key must not reach it, since a 63-digit one
        # would be padded into some other key. The value is never echoed.
        if key is not None and len(key.removeprefix("0x").removeprefix("0X")) != 64:
            raise ConfigError(f"{ENV_PREFIX}PRIVATE_KEY: a private key is 64 hex digits "
                              "(0x optional)")
        return {"secrets": found}


def _read_secret(environ: Mapping[str, str], name: str) -> str | None:
    env = ENV_PREFIX + name.upper()
    if environ.get(env):
        return environ[env]
    file_var = env + "_FILE"
    if environ.get(file_var):
        path = Path(environ[file_var])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{file_var}: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file_var}: {path} is not UTF-8 text") from None
    return None


class TomlFileSource(TomlConfigSettingsSource):
    """The TOML file, read strictly: UTF-8 only, not empty, and no secrets in it."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        path = Path(str(file_path))
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {one_line(str(exc))}") from None
        if not data:
            raise ConfigError(f"{path}: no settings in the file (empty config)")
        if "secrets" in data or any(k in SECRET_KEYS for s in data.values()
                                    if isinstance(s, dict) for k in s):
            raise ConfigError(f"{path}: secrets are read only from the environment "
                              "(KEEPER_PRIVATE_KEY, KEEPER_KEYSTORE_PASSWORD[_FILE]), never from "
                              "the config file")
        return data
