"""A small etcd v3 client over etcd's JSON gateway (``/v3/...``), with aiohttp.

Why the gateway and not a gRPC client: PyPI ``aetcd`` (1.0.0) does install here (grpcio
1.85, protobuf 7), but a client talks to one ``host:port`` only (no failover across the
members of a cluster, which is the point of running three), it ships no type information
(mypy --strict), and it would add grpcio and protobuf to the keeper for six calls. The gateway
is part of every etcd v3 server (3.4 serves it at ``/v3/``), aiohttp is already here, and every
call gets an exact timeout of its own.

What it does: the few calls the keeper network needs (range, put, delete, txn, lease grant /
keepalive / revoke / status), each one POST with base64 keys and values and int64s as strings,
as the gateway speaks them. Endpoints are tried in turn: a member that does not answer within
``timeout`` (down, partitioned, or without quorum: etcd then holds the request until its own
timeout) makes the client try the next one, starting next time from the last one that answered.

Failover retries a write on another member. Every write the keeper makes is either idempotent
(a put of the same value, a delete, a keepalive) or a transaction guarded by a compare whose
outcome the caller re-reads (``keeper.cluster.lease``), so a write applied by a member whose
reply was lost does no harm.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from keeper.errors import KeeperError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

Json = dict[str, Any]


class EtcdUnavailable(KeeperError, ConnectionError):
    """No etcd member answered (or none has quorum): the cluster state is unknown."""


class EtcdRejected(KeeperError, RuntimeError):
    """A member answered with an error about the request itself (a bad lease id, say)."""


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def unb64(data: str) -> bytes:
    return base64.b64decode(data)


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that selects every key starting with ``prefix`` (base64)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # keys here are ASCII paths: the last byte is never 0xff
    return b64(bytes(raw))


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _kv(raw: Json) -> KeyValue:
    return KeyValue(key=unb64(raw["key"]).decode(), value=unb64(raw.get("value", "")),
                    create_revision=int(raw.get("create_revision", 0)),
                    mod_revision=int(raw.get("mod_revision", 0)), lease=int(raw.get("lease", 0)))


class EtcdClient:
    """The etcd cluster at ``endpoints`` (``http://host:port`` of each member's client URL)."""

    def __init__(self, endpoints: list[str], *, timeout: float = 1.0) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._first = 0  # the member that answered last
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(self, path: str, body: Json, *, timeout: float | None = None) -> Json:
        """POST ``body`` to ``path`` on the first member that answers; ``EtcdUnavailable``
        when none does within ``timeout`` each."""
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        errors: list[str] = []
        n = len(self.endpoints)
        for i in range(n):
            index = (self._first + i) % n
            url = self.endpoints[index] + path
            try:
                async with self._http().post(url, json=body, timeout=limit) as resp:
                    reply: Json = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(f"{self.endpoints[index]}: {type(exc).__name__} {exc}".strip())
                continue
            if status >= 500 or (status != 200 and _unavailable(reply)):
                # The member is up but cannot serve (no leader, no quorum): try another.
                errors.append(f"{self.endpoints[index]}: {status} {reply.get('error', '')}")
                continue
            self._first = index
            if status != 200:
                raise EtcdRejected(f"etcd {path}: {status} {reply.get('error') or reply}")
            return reply
        raise EtcdUnavailable("no etcd member answered: " + "; ".join(errors))

    # ---- kv ----------------------------------------------------------------------------
    async def get(self, key: str) -> KeyValue | None:
        reply = await self.post("/v3/kv/range", {"key": b64(key)})
        kvs = reply.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        reply = await self.post("/v3/kv/range", {"key": b64(prefix),
                                                 "range_end": prefix_end(prefix)})
        return [_kv(kv) for kv in reply.get("kvs") or []]

    async def put(self, key: str, value: str | bytes, *, lease: int = 0) -> None:
        body: Json = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        await self.post("/v3/kv/put", body)

    async def delete(self, key: str) -> None:
        await self.post("/v3/kv/deleterange", {"key": b64(key)})

    async def delete_prefix(self, prefix: str) -> None:
        await self.post("/v3/kv/deleterange", {"key": b64(prefix),
                                                "range_end": prefix_end(prefix)})

    async def txn(self, compare: list[Json], success: list[Json],
                  failure: list[Json] | None = None) -> Json:
        """An etcd transaction; the reply has ``succeeded`` (absent = false) and ``responses``."""
        return await self.post("/v3/kv/txn", {"compare": compare, "success": success,
                                              "failure": failure or []})

    # ---- leases ------------------------------------------------------------------------
    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, the TTL etcd granted, in seconds)."""
        reply = await self.post("/v3/lease/grant", {"TTL": str(ttl)})
        if reply.get("error"):
            raise EtcdRejected(f"lease grant: {reply['error']}")
        return int(reply["ID"]), int(reply["TTL"])

    async def keepalive(self, lease: int) -> int:
        """Renew ``lease``; the TTL it has again, or 0 when it has expired (or was revoked)."""
        reply = await self.post("/v3/lease/keepalive", {"ID": str(lease)})
        result = reply.get("result", reply)
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        """Revoke ``lease`` (its keys go with it); a lease already gone is not an error."""
        try:
            await self.post("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdRejected as exc:
            if "not found" not in str(exc):
                raise

    async def status(self, endpoint: str) -> Json:
        """One member's status (its id, leader, raft term): for tests and health."""
        limit = aiohttp.ClientTimeout(total=self.timeout)
        async with self._http().post(endpoint.rstrip("/") + "/v3/maintenance/status", json={},
                                     timeout=limit) as resp:
            reply: Json = await resp.json(content_type=None)
            return reply


def _unavailable(reply: Json) -> bool:
    message = str(reply.get("error") or reply.get("message") or "").lower()
    return any(s in message for s in ("no leader", "timed out", "unavailable", "too many requests",
                                      "leader changed", "not capable"))


def compare_create(key: str, revision: int) -> Json:
    """Compare: ``key``'s create revision is ``revision`` (0: the key does not exist)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL",
            "create_revision": str(revision)}


def compare_value(key: str, value: str) -> Json:
    return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(value)}


def compare_lease(key: str, lease: int) -> Json:
    return {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}


def op_put(key: str, value: str | bytes, lease: int = 0) -> Json:
    put: Json = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_get(key: str) -> Json:
    return {"request_range": {"key": b64(key)}}


def txn_succeeded(reply: Json) -> bool:
    return bool(reply.get("succeeded", False))


def txn_range(reply: Json, index: int = 0) -> KeyValue | None:
    """The key read by the ``index``-th operation of the branch that ran, if any."""
    responses = reply.get("responses") or []
    if index >= len(responses):
        return None
    kvs = (responses[index].get("response_range") or {}).get("kvs") or []
    return _kv(kvs[0]) if kvs else None


async def wait_until(condition: asyncio.Event, timeout: float) -> bool:
    """Wait for ``condition`` up to ``timeout`` seconds; whether it is set."""
    try:
        await asyncio.wait_for(condition.wait(), timeout)
    except TimeoutError:
        return condition.is_set()
    return True
