"""``[cluster]``: a keeper network (``keeper run --cluster``), replicas coordinated through
etcd (``keeper.cluster``, README "Keeper network"). A section of ``KeeperConfig``, in a module
of its own so that the config module stays one screenful per concern."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode


class ClusterConfig(BaseModel):
    """``lease_ttl`` unset: three block times (at least 3 s); ``replica_id`` unset: the host
    name (a StatefulSet pod's name is unique); ``name`` unset: ``network.name``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = False
    endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=16)
    # The network's name in etcd keys (/keeper/<name>/...).
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    replica_id: str | None = Field(None, min_length=1, max_length=128)
    lease_ttl: int | None = Field(None, ge=2, le=3_600)
    # The holder stops this long before its lease could expire in etcd (clock rates, latency).
    safety_margin: float = Field(1.0, gt=0, le=600)
    poll_interval: float = Field(0.5, ge=0.05, le=60)
    request_timeout: float = Field(1.0, ge=0.05, le=60)
    # How long a new holder waits for the previous holder's transactions to be mined.
    takeover_timeout: float = Field(30.0, ge=0, le=3_600)

    @field_validator("endpoints", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        # The environment gives lists as ``a, b``; the file gives TOML arrays.
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("endpoints")
    @classmethod
    def _http(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s):// URL of an etcd member")
        return v

    @field_validator("lease_ttl", "safety_margin", "poll_interval", "request_timeout",
                     "takeover_timeout", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        # pydantic takes true for 1; in a config that is a typo, never a number.
        if isinstance(v, bool):
            raise ValueError("a number is needed, not true/false")
        return v
