"""Landing records in object storage: gzipped NDJSON parts, then ``manifest.json``, atomic by manifest.

A landed folder::

    part-<run>-00000.ndjson.gz        the records; <run> (12 hex digits) is unique to one ``land()`` call
    manifest.json                     the current revision: the same bytes as the newest file below
    _manifests/manifest-000001.json   every revision ever published, one file each, never rewritten
    _manifests/manifest-000002.json
    .run-<run>.json                   only while a run is writing: its in-flight marker
    .lock-<ms>-<run>.json             only while a run publishes: its claim on the folder's publish lock

The promise: a folder is complete when it holds ``manifest.json``, and every part that manifest lists is then
there, whole, matching its record count and sha256, at every moment: while a rerun replaces the folder, after
a run dies half way (the previous complete state stays readable), and while several runs of the same interval
write into the same folder at once (a manual run overlapping the scheduled one, a cleared task,
``max_active_runs > 1`` with an undated path).

Writing (:func:`land`):

1. The run writes its in-flight marker, then its parts under its own run id: no two runs ever write the same
   name, and no part is ever overwritten. Each part is published whole (object stores only show an object once
   its upload completes; a local file is written under a hidden name and renamed). The marker is rewritten as
   batches arrive (at most every ``HEARTBEAT_EVERY`` seconds).
2. It takes the folder's publish lock, checks that its own parts are all still there, writes its revision as
   ``_manifests/manifest-<revision:06d>.json`` (created exclusively: never over another run's revision), then
   replaces ``manifest.json`` with the same bytes in one step (an object PUT, or a local rename).
3. Still holding the lock it removes what no one needs any more, then lets the lock go and removes its marker:
   parts listed neither by ``manifest.json`` nor by a live run's marker (the superseded revision's, a failed
   or dead run's), hidden temporary files and markers of dead runs.

What is kept: the current revision's parts, always, and the parts of every run still writing. The parts of older
revisions are removed once a newer revision is published: their ``_manifests`` files stay (so the chain still
verifies by digest back to the first landing) but the parts they list may be gone. Files the landing does not
name (anything but parts, markers, lock claims and temporary files) are never touched. A run that fails after
writing its revision but before replacing ``manifest.json`` leaves that revision in the chain, never current;
the next revision chains to it.

Concurrent runs of one interval into one folder write their parts side by side. The first to finish publishes
its revision; the other waits for the lock, then publishes the next revision over it (reason ``"rerun"``) and
removes the first one's parts. Both succeed, and the folder ends with the later one's records. A run fails with
:class:`LandingConflictError`, leaving the published state as it was, only when it waits longer than
``lock_timeout`` for the lock, or when it finds its own parts removed (another run took it for dead).

The publish lock needs nothing of the store but listings that show every object written before they started
(S3, GCS, Azure Blob and local disks all give that): a run writes its claim, lists the claims, and goes ahead
only if it sees no other live one; otherwise the oldest claim stays and waits while the others withdraw and
try again after a random pause. Of two runs, the one that lists second always sees the other's claim, so two
never hold the lock at once. A run is taken for dead when its marker or claim names this host (and PID
namespace) and its process is gone, or when the marker was not rewritten for ``RUN_STALE_AFTER`` seconds (a
lock claim: older than ``LOCK_STALE_AFTER``).

WORM buckets (``worm=``, S3 with versioning and Object Lock): nothing is ever deleted or overwritten, and no
lock, marker or temporary file is written. Every object (parts, revisions, each new version of
``manifest.json``) is written with ``ObjectLockMode``, ``ObjectLockRetainUntilDate`` (the time of the write
plus ``retain_for``) and ``ObjectLockLegalHoldStatus``; each revision file is created with ``If-None-Match: *``,
so of two concurrent runs the second takes the next revision number, and after writing ``manifest.json`` a
run copies any newer revision over it, so ``manifest.json``'s newest version is always the newest revision.
The parts of older revisions, and of failed runs, stay where they are, listed by no current manifest.
``sse=`` (``ServerSideEncryption``, ``SSEKMSKeyId``, ...) goes with every object written to S3, WORM or not.

The manifest (``MANIFEST_FORMAT`` 2; readers accept 1, which has no chain): the caller's ``metadata`` (log
type, ``start``, ``end``, ...), ``folder``, ``format``, ``revision`` (1 for the first landing), ``previous``
(the sha256 hex of the exact bytes of the revision it replaces, or ``null`` for revision 1), ``reason`` (why it
was written: ``"first landing"``, ``"rerun"``, or what the caller says, e.g. ``"recheck: late records"``),
``run``, ``record_count``, ``parts`` (``name``, ``records``, ``bytes``, ``sha256`` each), ``provider_version``,
``manifest_format``, ``written_at``; and, when signed, ``signature`` = ``{"alg": "HMAC-SHA256", "key_id":
<connection id>, "value": <hex>}``, an HMAC-SHA256 over :func:`canonical_bytes` of the manifest without its
``signature`` (:func:`sign_manifest`, :func:`signature_valid`). The key is the password of an Airflow
connection of any type (e.g. ``generic``): :func:`signing_key`. A folder landed with format 1 keeps its
``manifest.json`` as revision 1, byte for byte, when it is first rerun. :func:`list_revisions` returns every
revision's bytes, oldest first, for following the chain; :func:`history` what each revision says of itself
(a revision written by a recheck carries its drift report under ``drift``).

Records are written byte for byte as given (the API's own JSON), one per line, and streamed: memory holds
one batch and the compressor's buffers, never a part or the interval.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import hashlib
import hmac
import io
import json
import logging
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Literal, overload

import msgspec
import pendulum
from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera import __version__
from airflow_provider_opsera.exceptions import LandingConflictError, LandingIntegrityError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: The folder (inside a landed folder) that holds every revision of the manifest.
REVISIONS = "_manifests"
#: Records per part unless the caller says otherwise: a few MB to a few tens of MB compressed.
DEFAULT_RECORDS_PER_PART = 100_000
#: Bumped when the manifest's shape changes in a way a reader must know about (2: the revision chain).
MANIFEST_FORMAT = 2
SIGNATURE_ALG = "HMAC-SHA256"
#: The reasons ``land`` gives a revision when the caller gives none.
FIRST_LANDING = "first landing"
RERUN = "rerun"
#: Seconds a run waits for another run's publish lock before it fails.
LOCK_TIMEOUT = 600.0
#: A publish lock claim older than this (seconds) is a dead holder's: publishing takes seconds.
LOCK_STALE_AFTER = 120.0
#: An in-flight marker not rewritten for this long (seconds) belongs to a dead run.
RUN_STALE_AFTER = 3600.0
#: Seconds between two rewrites of a run's in-flight marker.
HEARTBEAT_EVERY = 60.0
#: The server-side encryption arguments ``sse`` may hold (S3 PutObject / CreateMultipartUpload names).
SSE_ARGUMENTS = frozenset(
    {"ServerSideEncryption", "SSEKMSKeyId", "SSEKMSEncryptionContext", "BucketKeyEnabled"}
)
OBJECT_LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")

_RUN = r"[0-9a-f]{12}"
_PART = re.compile(rf"^part-(?:(?P<run>{_RUN})-)?(?P<index>\d{{5,}})\.ndjson\.gz$")
_TEMP = re.compile(rf"^\.(?P<name>.+?)\.(?:(?P<run>{_RUN})\.)?[0-9a-f]{{32}}\.tmp$")
_MARKER = re.compile(rf"^\.run-(?P<run>{_RUN})\.json$")
_LOCK = re.compile(rf"^\.lock-(?P<at>\d{{13}})-(?P<run>{_RUN})\.json$")
_REVISION = re.compile(r"^manifest-(?P<revision>\d{6,})\.json$")
_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
#: How many times a run takes the next revision number because another run took its own first.
_REVISION_RACES = 100


def part_name(index: int, run: str | None = None) -> str:
    return f"part-{run}-{index:05d}.ndjson.gz" if run else f"part-{index:05d}.ndjson.gz"


def revision_name(revision: int) -> str:
    """The revision's file, relative to the landed folder."""
    return f"{REVISIONS}/manifest-{revision:06d}.json"


def storage_uri(path: ObjectStoragePath) -> str:
    """The path's URI without the connection id Airflow shows in ``str()`` (``s3://conn@bucket/...``)."""
    return f"{path.protocol}://{path.path}" if path.protocol else str(path)


# -- the revision chain ---------------------------------------------------------------------------------------
def canonical_bytes(obj: Any) -> bytes:
    """The one byte spelling of a JSON value that signatures are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_digest(data: bytes) -> str:
    """The sha256 hex of a manifest revision's exact bytes (what the next revision's ``previous`` holds)."""
    return hashlib.sha256(data).hexdigest()


def _hmac(manifest: Mapping[str, Any], key: bytes) -> str:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return hmac.new(key, canonical_bytes(unsigned), hashlib.sha256).hexdigest()


def sign_manifest(manifest: Mapping[str, Any], key: bytes, key_id: str) -> dict[str, Any]:
    """The manifest with ``signature``: HMAC-SHA256 with ``key`` over its canonical bytes without a signature."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return {**unsigned, "signature": {"alg": SIGNATURE_ALG, "key_id": key_id, "value": _hmac(unsigned, key)}}


def signature_valid(manifest: Mapping[str, Any], key: bytes) -> bool:
    """Whether the manifest carries an HMAC-SHA256 signature that ``key`` computes over its other fields."""
    signature = manifest.get("signature")
    if not isinstance(signature, Mapping) or signature.get("alg") != SIGNATURE_ALG:
        return False
    value = signature.get("value")
    return isinstance(value, str) and hmac.compare_digest(value, _hmac(manifest, key))


def signing_key(conn_id: str) -> bytes:
    """The manifest signing key held in an Airflow connection (any type, e.g. ``generic``): its password."""
    from airflow_provider_opsera.compat import BaseHook

    password = BaseHook.get_connection(conn_id).password
    if not password:
        raise ValueError(
            f"Connection {conn_id!r} has no password: the manifest signing key is the connection's password."
        )
    return password.encode()


def _encode(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2).encode() + b"\n"


# -- WORM and encryption settings -----------------------------------------------------------------------------
def _duration(value: Any) -> dt.timedelta:
    """A ``timedelta`` (or pendulum ``Duration``), seconds, or an ISO 8601 duration (``"P7Y"``, ``"PT36H"``)."""
    if isinstance(value, dt.timedelta):
        duration = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        duration = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        try:
            parsed = pendulum.parse(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, pendulum.Duration):
            raise ValueError(f"retain_for={value!r} is not an ISO 8601 duration such as 'P7Y' or 'P90D'.")
        duration = parsed
    else:
        raise TypeError(f"retain_for must be a timedelta, seconds or an ISO 8601 duration, not {value!r}.")
    now = pendulum.now("UTC")
    if now + duration <= now:
        raise ValueError(f"retain_for must be a positive duration, not {value!r}.")
    return duration


@dataclasses.dataclass(frozen=True)
class WormSettings:
    """S3 Object Lock for every object a landing writes.

    :param mode: ``"COMPLIANCE"`` (no one can shorten the retention or delete the object) or ``"GOVERNANCE"``
        (users with ``s3:BypassGovernanceRetention`` can).
    :param retain_for: how long each object is retained from its write: a ``timedelta``, seconds, or an ISO
        8601 duration (``"P7Y"``).
    :param legal_hold: also place a legal hold (``ObjectLockLegalHoldStatus="ON"``) on every object.
    """

    mode: str
    retain_for: Any
    legal_hold: bool = False

    def __post_init__(self) -> None:
        mode = str(self.mode).upper()
        if mode not in OBJECT_LOCK_MODES:
            raise ValueError(f"worm mode must be one of {', '.join(OBJECT_LOCK_MODES)}, not {self.mode!r}.")
        if not isinstance(self.legal_hold, bool):
            raise TypeError(f"worm legal_hold must be True or False, not {self.legal_hold!r}.")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "retain_for", _duration(self.retain_for))

    @classmethod
    def coerce(cls, value: WormSettings | Mapping[str, Any] | None) -> WormSettings | None:
        """``None``, the settings themselves, or a mapping with ``mode``, ``retain_for`` and ``legal_hold``."""
        if value is None or isinstance(value, WormSettings):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"worm must be a mapping such as {{'mode': 'COMPLIANCE', 'retain_for': 'P7Y'}}, not {value!r}."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - fields)
        if unknown:
            raise ValueError(f"worm takes {', '.join(sorted(fields))}; not {', '.join(unknown)}.")
        if "mode" not in value or "retain_for" not in value:
            raise ValueError("worm needs 'mode' (COMPLIANCE or GOVERNANCE) and 'retain_for' (e.g. 'P7Y').")
        return cls(**value)

    def put_arguments(self) -> dict[str, Any]:
        """The Object Lock arguments of one write, retained from now."""
        until = (pendulum.now("UTC") + self.retain_for).replace(microsecond=0)
        return {
            "ObjectLockMode": self.mode,
            "ObjectLockRetainUntilDate": until,
            "ObjectLockLegalHoldStatus": "ON" if self.legal_hold else "OFF",
        }


def sse_arguments(sse: Mapping[str, Any] | None) -> dict[str, Any]:
    """The server-side encryption arguments to send with every write (checked against ``SSE_ARGUMENTS``)."""
    if sse is None:
        return {}
    if not isinstance(sse, Mapping):
        raise TypeError(f"sse must be a mapping such as {{'ServerSideEncryption': 'aws:kms'}}, not {sse!r}.")
    unknown = sorted(set(sse) - SSE_ARGUMENTS)
    if unknown:
        raise ValueError(f"sse takes {', '.join(sorted(SSE_ARGUMENTS))}; not {', '.join(unknown)}.")
    return dict(sse)


# -- who is alive ---------------------------------------------------------------------------------------------
def _identity() -> str:
    """This host, and the PID namespace (two containers may share a host name, never a namespace)."""
    host = socket.gethostname()
    with contextlib.suppress(OSError):
        host += "/" + os.readlink("/proc/self/ns/pid")
    return host


def _claim(run: str) -> bytes:
    """The body of a marker or lock claim: who wrote it, when."""
    return json.dumps(
        {"run": run, "host": _identity(), "pid": os.getpid(), "at": pendulum.now("UTC").isoformat()}
    ).encode()


def _parse_claim(data: bytes | None) -> dict[str, Any] | None:
    try:
        claim = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return claim if isinstance(claim, dict) else None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    try:  # a killed process nobody has reaped yet is a zombie: gone all the same
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _claim_alive(claim: Mapping[str, Any] | None, written: float | None, stale_after: float) -> bool:
    """Whether the run behind a claim may still be at work: its process is not known gone, and the claim was
    written (``written``, epoch seconds; else the claim's own ``at``) less than ``stale_after`` ago."""
    if claim is None:
        return False
    pid = claim.get("pid")
    if claim.get("host") == _identity() and isinstance(pid, int) and _process_gone(pid):
        return False
    if written is None:
        try:
            written = dt.datetime.fromisoformat(str(claim.get("at"))).timestamp()
        except ValueError:
            return False
    return time.time() - written < stale_after


# -- writing --------------------------------------------------------------------------------------------------
class _HashingWriter:
    """A write-only file object that hashes and counts the (compressed) bytes passing through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


class _Publisher:
    """Writes files into one folder so that each appears whole or not at all, as one run."""

    def __init__(
        self,
        folder: ObjectStoragePath,
        run: str,
        *,
        put_arguments: Callable[[], dict[str, Any]] = dict,
        worm: bool = False,
    ) -> None:
        self.folder = folder
        self.fs = folder.fs
        self.base = folder.path.rstrip("/")
        self.run = run
        self.put_arguments = put_arguments
        self.worm = worm
        # Object stores publish an object when its upload completes; a local file needs a rename for that.
        self.local = folder.protocol in _LOCAL_PROTOCOLS or not folder.protocol
        if self.local:
            self.fs.makedirs(self.base, exist_ok=True)

    def full(self, name: str) -> str:
        return f"{self.base}/{name}"

    def open(self, name: str, *, exclusive: bool = False) -> tuple[BinaryIO, Callable[[bool], None]]:
        """A binary file to write ``name`` through, and ``done(ok)`` to publish it (or drop it).

        With ``exclusive``, ``done(True)`` raises ``FileExistsError`` when ``name`` exists already.
        """
        target = self.full(name)
        if self.local:
            head, _, tail = name.rpartition("/")
            if head:
                self.fs.makedirs(self.full(head), exist_ok=True)
            temp = self.full(f"{head}/" * bool(head) + f".{tail}.{self.run}.{uuid.uuid4().hex}.tmp")
            # The filesystem itself, not ObjectStoragePath.open: that wrapper reports lineage on every write().
            handle: BinaryIO = self.fs.open(temp, "wb")
        else:
            handle = self._open_object(target, exclusive)

        def done(ok: bool) -> None:
            if self.local:
                handle.close()
                if ok:
                    self._rename(temp, target, exclusive)
                else:
                    self.remove(temp)
                return
            if ok:
                handle.close()  # commits the upload (with If-None-Match: * when exclusive)
                return
            # Closing an object-store file commits the upload: abandon it instead, and (unless nothing may be
            # deleted here) remove whatever part of it may have been committed already.
            discard = getattr(handle, "discard", None)
            try:
                if discard is not None:
                    discard()
                    # fsspec files close on garbage collection; a discarded one has nothing to close.
                    with contextlib.suppress(Exception):
                        handle.closed = True  # type: ignore[misc]
                elif not self.worm:
                    handle.close()
            finally:
                if not self.worm:
                    self.remove(target)

        return handle, done

    def _open_object(self, target: str, exclusive: bool) -> BinaryIO:
        arguments = self.put_arguments()
        if not exclusive:
            return self.fs.open(target, "wb", **arguments)
        try:
            return self.fs.open(target, "xb", **arguments)
        except (ValueError, NotImplementedError):
            # A store without exclusive creation: there, only the publish lock keeps revisions apart.
            if self.fs.exists(target):
                raise FileExistsError(target) from None
            return self.fs.open(target, "wb", **arguments)

    def _rename(self, temp: str, target: str, exclusive: bool) -> None:
        if not exclusive:
            self.fs.mv(temp, target)
            return
        try:
            self.fs.link(temp, target)  # fails if the target exists: an exclusive, atomic publish
        except FileExistsError:
            self.remove(temp)
            raise
        except OSError:
            # No hard links on this filesystem: under the publish lock, a look first is enough.
            if self.fs.exists(target):
                self.remove(temp)
                raise FileExistsError(target) from None
            self.fs.mv(temp, target)
            return
        self.remove(temp)

    def write_bytes(self, name: str, data: bytes, *, exclusive: bool = False) -> None:
        handle, done = self.open(name, exclusive=exclusive)
        try:
            handle.write(data)
        except BaseException:
            done(False)
            raise
        done(True)

    def read(self, name: str) -> bytes | None:
        path = self.full(name)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None

    def remove(self, full_path: str) -> None:
        if self.worm:
            raise RuntimeError(f"A WORM landing never deletes, and was about to delete {full_path}.")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(full_path)

    def names(self, sub: str = "") -> list[str]:
        return _names(self.fs, f"{self.base}/{sub}" if sub else self.base)


def _names(fs: Any, path: str) -> list[str]:
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries]


def _lines(payloads: Sequence[bytes]) -> bytes:
    """The records as NDJSON. The hook's raw records hold no newline; any other input is made compact."""
    joined = b"\n".join(payloads) + b"\n"
    if joined.count(b"\n") == len(payloads):
        return joined
    # A newline outside a JSON string is whitespace: re-format only that, keeping every value byte for byte.
    return b"".join(msgspec.json.format(p, indent=-1) + b"\n" for p in payloads)


class _PartSink:
    """Splits a stream of record batches into parts of at most ``records_per_part`` records."""

    def __init__(self, publisher: _Publisher, records_per_part: int, compresslevel: int) -> None:
        self.publisher = publisher
        self.records_per_part = records_per_part
        self.compresslevel = compresslevel
        self.parts: list[dict[str, Any]] = []
        self._open: tuple[gzip.GzipFile, _HashingWriter, Callable[[bool], None]] | None = None
        self._count = 0

    def _name(self) -> str:
        return part_name(len(self.parts), self.publisher.run)

    def _start(self) -> tuple[gzip.GzipFile, _HashingWriter, Callable[[bool], None]]:
        handle, done = self.publisher.open(self._name())
        hashing = _HashingWriter(handle)
        # mtime=0: the same records give the same bytes (and sha256) on every run.
        gz = gzip.GzipFile(fileobj=hashing, mode="wb", compresslevel=self.compresslevel, mtime=0)  # type: ignore[arg-type]
        self._open, self._count = (gz, hashing, done), 0
        return self._open

    def write(self, payloads: Sequence[bytes]) -> None:
        offset = 0
        while offset < len(payloads):
            gz, _, _ = self._open or self._start()
            take = min(len(payloads) - offset, self.records_per_part - self._count)
            gz.write(_lines(payloads[offset : offset + take]))
            self._count += take
            offset += take
            if self._count >= self.records_per_part:
                self.finish()

    def finish(self) -> None:
        if self._open is None:
            return
        gz, hashing, done = self._open
        self._open = None
        gz.close()
        done(True)
        self.parts.append(
            {
                "name": self._name(),
                "records": self._count,
                "bytes": hashing.size,
                "sha256": hashing.sha256.hexdigest(),
            }
        )

    def abort(self) -> None:
        try:
            if self._open is not None:
                gz, _, done = self._open
                self._open = None
                try:
                    gz.close()
                finally:
                    done(False)
        finally:
            # The parts of a failed run are listed by no manifest: remove them (a dead process leaves them to
            # a later run, which removes them once their marker is a dead run's). On WORM they stay.
            if not self.publisher.worm:
                for part in self.parts:
                    self.publisher.remove(self.publisher.full(part["name"]))


class _RunMarker:
    """A run's in-flight marker: while it is alive, no other run removes this run's files."""

    def __init__(self, publisher: _Publisher) -> None:
        self.publisher = publisher
        self.name = f".run-{publisher.run}.json"
        self._written = 0.0

    def write(self) -> None:
        self.publisher.write_bytes(self.name, _claim(self.publisher.run))
        self._written = time.monotonic()

    def heartbeat(self) -> None:
        if time.monotonic() - self._written >= HEARTBEAT_EVERY:
            self.write()

    def remove(self) -> None:
        self.publisher.remove(self.publisher.full(self.name))


class _PublishLock:
    """The folder's publish lock: one run at a time publishes a revision and cleans up (see the module)."""

    def __init__(self, publisher: _Publisher, timeout: float) -> None:
        self.publisher = publisher
        self.timeout = timeout
        self.name: str | None = None
        self._claims: dict[str, dict[str, Any] | None] = {}

    def __enter__(self) -> _PublishLock:
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        waited = False
        while True:
            at = time.time_ns() // 1_000_000
            self.name = f".lock-{at:013d}-{self.publisher.run}.json"
            self.publisher.write_bytes(self.name, _claim(self.publisher.run))
            kept = time.monotonic()
            while True:
                others = self._others()
                if not others:
                    if waited:
                        log.info("Got the publish lock of %s.", storage_uri(self.publisher.folder))
                    return self
                if not waited:
                    waited = True
                    log.info(
                        "Waiting for another run to finish publishing to %s (%s).",
                        storage_uri(self.publisher.folder),
                        self._describe(others),
                    )
                oldest = min(others)[:2] > (at, self.publisher.run)
                # The oldest claim stays and waits (not so long that its own claim goes stale); others withdraw.
                now = time.monotonic()
                if not oldest or now - kept > LOCK_STALE_AFTER / 2 or now > deadline:
                    break
                time.sleep(0.05 + random.random() * 0.05)
            self._withdraw()
            if time.monotonic() > deadline:
                raise LandingConflictError(
                    f"Another run is publishing to {storage_uri(self.publisher.folder)}: waited "
                    f"{self.timeout:.0f}s for its lock ({self._describe(others)}). Runs of one interval into "
                    f"one folder take turns; a dead run's lock claim is stale after {LOCK_STALE_AFTER:.0f}s."
                )
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 2.0)

    def __exit__(self, *exc_info: object) -> None:
        self._withdraw()

    def _withdraw(self) -> None:
        if self.name is not None:
            self.publisher.remove(self.publisher.full(self.name))
            self.name = None

    def _others(self) -> list[tuple[int, str, str]]:
        """The live claims of other runs, oldest first; stale ones are removed on the way."""
        live = []
        for name in self.publisher.names():
            match = _LOCK.match(name)
            if match is None or name == self.name:
                continue
            claim = self._claims.get(name) or _parse_claim(self.publisher.read(name))
            if claim is None:
                continue  # withdrawn since the listing (claims are written whole)
            self._claims[name] = claim
            at = int(match["at"])
            if _claim_alive(claim, at / 1000, LOCK_STALE_AFTER):
                live.append((at, match["run"], name))
            else:
                log.info("Removing a dead run's publish lock claim %s.", name)
                self.publisher.remove(self.publisher.full(name))
        return sorted(live)

    def _describe(self, others: list[tuple[int, str, str]]) -> str:
        held = []
        for at, run, name in others:
            claim = self._claims.get(name) or {}
            since = pendulum.from_timestamp(at / 1000).isoformat()
            held.append(f"run {run} on {claim.get('host', '?')} pid {claim.get('pid', '?')} since {since}")
        return "; ".join(held) or "no claim left"


def _revision_numbers(publisher: _Publisher) -> list[int]:
    return sorted(int(m["revision"]) for m in map(_REVISION.match, publisher.names(REVISIONS)) if m)


def _write_revision(
    publisher: _Publisher,
    body: Mapping[str, Any],
    reason: str | None,
    key: bytes | None,
    key_id: str | None,
) -> tuple[dict[str, Any], bytes]:
    """Write the next revision of the folder's manifest into ``_manifests``, created exclusively; return it
    and its bytes. When another run takes the number first, take the next one, chained to that one."""
    for _ in range(_REVISION_RACES):
        numbers = _revision_numbers(publisher)
        if numbers:
            previous_bytes = publisher.read(revision_name(numbers[-1]))
            if previous_bytes is None:
                raise LandingIntegrityError(f"{revision_name(numbers[-1])} is listed but cannot be read.")
            previous: str | None = manifest_digest(previous_bytes)
            number = numbers[-1] + 1
        else:
            legacy = publisher.read(MANIFEST)
            if legacy is not None:
                # A folder landed before revisions (manifest format 1): its manifest becomes revision 1, as is.
                revision = (_parse_claim(legacy) or {}).get("revision")
                with contextlib.suppress(FileExistsError):
                    publisher.write_bytes(
                        revision_name(revision if isinstance(revision, int) and revision > 0 else 1),
                        legacy,
                        exclusive=True,
                    )
                continue
            previous, number = None, 1
        manifest: dict[str, Any] = {
            **body,
            "revision": number,
            "previous": previous,
            "reason": reason if reason is not None else (FIRST_LANDING if number == 1 else RERUN),
            "written_at": pendulum.now("UTC").isoformat(),
        }
        if key is not None:
            manifest = sign_manifest(manifest, key, key_id or "")
        data = _encode(manifest)
        try:
            publisher.write_bytes(revision_name(number), data, exclusive=True)
        except FileExistsError:
            log.info(
                "Another run published revision %d of %s first; publishing the next.", number, body["folder"]
            )
            continue
        return manifest, data
    raise LandingConflictError(
        f"{body['folder']}: other runs kept publishing revisions first ({_REVISION_RACES} times in a row)."
    )


def _converge(publisher: _Publisher, written: int) -> None:
    """Make ``manifest.json`` the newest revision, should another run have published a newer one between
    this run's revision and its ``manifest.json`` (possible on WORM, where no lock orders them)."""
    while True:
        numbers = _revision_numbers(publisher)
        if not numbers or numbers[-1] <= written:
            return
        written = numbers[-1]
        data = publisher.read(revision_name(written))
        if data is None:
            raise LandingIntegrityError(f"{revision_name(written)} is listed but cannot be read.")
        publisher.write_bytes(MANIFEST, data)


def _check_own_parts(publisher: _Publisher, parts: Sequence[Mapping[str, Any]]) -> None:
    present = set(publisher.names())
    missing = [p["name"] for p in parts if p["name"] not in present]
    if missing:
        raise LandingConflictError(
            f"{storage_uri(publisher.folder)}: {len(missing)} of this run's parts ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}) were removed while it wrote them: another run took it for "
            f"dead (its marker was not rewritten for {RUN_STALE_AFTER:.0f}s). Nothing was published by this run."
        )


def _remove_unneeded(publisher: _Publisher, manifest: Mapping[str, Any]) -> None:
    """Under the publish lock: remove the parts no current manifest lists and no live run is writing, and the
    temporary files and markers of dead runs."""
    keep = {p["name"] for p in manifest["parts"]}
    current = _parse_claim(publisher.read(MANIFEST))
    if current is not None:
        keep.update(p["name"] for p in current.get("parts", ()) if isinstance(p, Mapping) and "name" in p)
    names = publisher.names()  # listed before the markers are read: a part seen here had its marker first
    live: set[str] = set()
    dead: list[str] = []
    for name in names:
        match = _MARKER.match(name)
        if match is None:
            continue
        if _claim_alive(_parse_claim(publisher.read(name)), None, RUN_STALE_AFTER):
            live.add(match["run"])
        else:
            dead.append(name)
    for name in names:
        if name in keep:
            continue
        match = _PART.match(name) or _TEMP.match(name)
        if match is not None and match["run"] not in live:
            publisher.remove(publisher.full(name))
    for name in publisher.names(REVISIONS):
        temp = _TEMP.match(name)
        if temp is not None and temp["run"] not in live:
            publisher.remove(publisher.full(f"{REVISIONS}/{name}"))
    for name in dead:
        log.info("Removed the leftovers of dead run %s.", name)
        publisher.remove(publisher.full(name))


def _check_object_lock(folder: ObjectStoragePath) -> None:
    """A WORM landing needs a bucket with Object Lock (and so versioning) enabled: refuse before writing."""
    call = getattr(folder.fs, "call_s3", None)
    # Not ``folder.bucket``: on Airflow 3.0 it keeps the connection id (``conn@bucket``).
    bucket = folder.path.lstrip("/").split("/", 1)[0]
    where = f"bucket {bucket!r} ({storage_uri(folder)})"
    if call is None:
        raise ValueError(f"worm needs S3 through s3fs, which {storage_uri(folder)} does not use.")
    try:
        answer = call("get_object_lock_configuration", Bucket=bucket)
    except OSError as err:
        raise ValueError(
            f"worm needs a bucket with Object Lock enabled; {where} has none ({err}). Create the bucket with "
            "Object Lock (ObjectLockEnabledForBucket=True), or land without worm."
        ) from err
    if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
        raise ValueError(f"worm needs a bucket with Object Lock enabled; {where} does not have it enabled.")


def land(
    batches: Iterable[Sequence[bytes]],
    folder: ObjectStoragePath,
    metadata: Mapping[str, Any],
    *,
    records_per_part: int = DEFAULT_RECORDS_PER_PART,
    compresslevel: int = 6,
    on_batch: Callable[[int], None] | None = None,
    reason: str | None = None,
    worm: WormSettings | Mapping[str, Any] | None = None,
    sse: Mapping[str, Any] | None = None,
    signing_key: bytes | None = None,
    signing_key_id: str | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> dict[str, Any]:
    """Write record batches (JSON bytes, one record each) to ``folder`` as parts, then the next manifest
    revision (see the module for the folder's layout and the guarantees).

    ``metadata`` (log type, interval, ...) goes into the manifest, which gets the fields the module lists.
    Returns the manifest. If ``batches`` raises, the parts written so far are removed (on WORM they stay,
    listed by nothing), the previous manifest and its parts stay as they were, and the error propagates.

    :param reason: why this revision is written (``"recheck: late records"``); default ``"first landing"``
        for a folder without a manifest, else ``"rerun"``.
    :param worm: S3 Object Lock settings (:class:`WormSettings`, or a mapping with ``mode``, ``retain_for``,
        ``legal_hold``): nothing is deleted or overwritten, every object is written locked. S3 only; the
        bucket must have Object Lock enabled.
    :param sse: server-side encryption arguments sent with every object written (``SSE_ARGUMENTS``). S3 only.
    :param signing_key: sign the manifest with HMAC-SHA256 under this key (see :func:`signing_key`), named
        by ``signing_key_id`` (the connection id) in the signature.
    :param lock_timeout: seconds to wait for another run's publish lock before failing with
        :class:`LandingConflictError`.
    """
    if records_per_part < 1:
        raise ValueError(f"records_per_part must be at least 1, not {records_per_part}.")
    lock = WormSettings.coerce(worm)
    encryption = sse_arguments(sse)
    if (lock is not None or encryption) and folder.protocol not in _S3_PROTOCOLS:
        raise ValueError(f"worm and sse apply to s3:// folders, not {storage_uri(folder)}.")
    if signing_key is not None and not signing_key_id:
        raise ValueError("signing_key needs signing_key_id, the id its signature names (the connection id).")
    if lock is not None:
        _check_object_lock(folder)

    def put_arguments() -> dict[str, Any]:
        return {**encryption, **(lock.put_arguments() if lock is not None else {})}

    publisher = _Publisher(folder, uuid.uuid4().hex[:12], put_arguments=put_arguments, worm=lock is not None)
    marker = _RunMarker(publisher) if lock is None else None
    sink = _PartSink(publisher, records_per_part, compresslevel)
    published = False
    try:
        if marker is not None:
            marker.write()
        for batch in batches:
            if batch:
                sink.write(batch)
            if on_batch is not None:
                on_batch(len(batch))
            if marker is not None:
                marker.heartbeat()
        sink.finish()
        body: dict[str, Any] = {
            **metadata,
            "folder": storage_uri(folder),
            "format": "ndjson.gz",
            "run": publisher.run,
            "record_count": sum(p["records"] for p in sink.parts),
            "parts": sink.parts,
            "provider_version": __version__,
            "manifest_format": MANIFEST_FORMAT,
        }
        with contextlib.nullcontext() if lock is not None else _PublishLock(publisher, lock_timeout):
            if lock is None:
                _check_own_parts(publisher, sink.parts)
            manifest, data = _write_revision(publisher, body, reason, signing_key, signing_key_id)
            publisher.write_bytes(MANIFEST, data)
            published = True
            _converge(publisher, manifest["revision"])
            if lock is None:
                _remove_unneeded(publisher, manifest)
    except BaseException:
        if not published:
            sink.abort()
        raise
    finally:
        if marker is not None:
            try:
                marker.remove()
            except Exception:  # a marker left behind only delays the cleanup of this run's leftovers
                log.warning("Could not remove the in-flight marker %s.", marker.name, exc_info=True)
    return manifest


# -- reading ------------------------------------------------------------------------------------------------
def _read(folder: ObjectStoragePath, name: str) -> bytes | None:
    path = f"{folder.path.rstrip('/')}/{name}"
    with contextlib.suppress(Exception):
        folder.fs.invalidate_cache(path)
    try:
        return bytes(folder.fs.cat_file(path))
    except FileNotFoundError:
        return None


def read_manifest(folder: ObjectStoragePath) -> dict[str, Any] | None:
    """The folder's manifest, or ``None`` when the folder is not (yet) complete."""
    data = _read(folder, MANIFEST)
    return None if data is None else json.loads(data)


def list_revisions(folder: ObjectStoragePath) -> list[tuple[bytes, dict]]:
    """Every revision of the folder's manifest in ``_manifests``, oldest (revision 1) first: its exact bytes
    and their parse. Empty for a folder never landed, and for one landed with manifest format 1 (no chain)
    and never rerun since (its first rerun keeps that manifest as revision 1)."""
    base = folder.path.rstrip("/")
    found = sorted(
        (int(m["revision"]), m.group(0))
        for m in map(_REVISION.match, _names(folder.fs, f"{base}/{REVISIONS}"))
        if m
    )
    revisions = []
    for _, name in found:
        data = _read(folder, f"{REVISIONS}/{name}")
        if data is None:
            raise LandingIntegrityError(f"{REVISIONS}/{name} is listed but cannot be read.")
        revisions.append((data, json.loads(data)))
    return revisions


def history(folder: ObjectStoragePath) -> list[dict[str, Any]]:
    """The folder's revisions, oldest first, each as ``revision``, ``reason``, ``written_at``,
    ``record_count``, ``run`` and, for a revision a recheck wrote, ``drift`` (the interval's drift report:
    counts before and after, ids added, removed and changed). Read from ``_manifests/``: what was landed when,
    and why each later revision replaced the one before."""
    keys = ("revision", "reason", "written_at", "record_count", "run", "drift")
    return [{k: m[k] for k in keys if k in m} for _, m in list_revisions(folder)]


@overload
def iter_landed_records(
    folder: ObjectStoragePath | str,
    *,
    conn_id: str | None = None,
    raw: Literal[False] = False,
    verify: bool = True,
) -> Iterator[dict[str, Any]]: ...


@overload
def iter_landed_records(
    folder: ObjectStoragePath | str, *, conn_id: str | None = None, raw: Literal[True], verify: bool = True
) -> Iterator[bytes]: ...


def iter_landed_records(
    folder: ObjectStoragePath | str, *, conn_id: str | None = None, raw: bool = False, verify: bool = True
) -> Iterator[dict[str, Any]] | Iterator[bytes]:
    """Every record of a complete landed folder, part by part in the manifest's order.

    :param folder: the folder, as an ``ObjectStoragePath`` or a URL string (``"file:///data/opsera/audit/"``,
        ``"s3://bucket/prefix/"``).
    :param conn_id: the connection for a URL string's credentials (e.g. an ``aws`` connection for ``s3://``);
        an ``ObjectStoragePath`` carries its own, so giving both is a ``ValueError``.
    :param raw: yield each record's line as ``bytes`` (the API's JSON byte for byte, without the newline)
        instead of the decoded ``dict``.
    :param verify: check each part against the manifest before yielding any of its records.

    Yields one decoded ``dict`` per record (or, with ``raw=True``, one ``bytes`` line). With ``verify``, each
    part is read whole (memory holds one compressed part) and its sha256 and record count are checked against
    the manifest first: a part that does not match raises :class:`LandingIntegrityError` before any of its
    records is yielded (the records of earlier parts, which matched, have been yielded by then).

    Raises, while iterating, :class:`LandingIntegrityError` when the folder has no ``manifest.json`` (it is not
    complete), a part the manifest lists is missing, or (with ``verify``) a part's sha256 or record count
    differs from the manifest's; also when a record line is not a JSON object (without ``raw``). A ``folder``
    of another type, or ``conn_id`` with an ``ObjectStoragePath``, is a ``TypeError`` / ``ValueError`` at once.
    """
    if isinstance(folder, str):
        path = ObjectStoragePath(folder, conn_id=conn_id)
    elif isinstance(folder, ObjectStoragePath):
        if conn_id is not None:
            raise ValueError(
                "conn_id applies to a URL string; an ObjectStoragePath carries its own connection "
                "(ObjectStoragePath(url, conn_id=...))."
            )
        path = folder
    else:
        raise TypeError(f"folder must be an ObjectStoragePath or a URL string, not {type(folder).__name__}.")
    return _landed_records(path, raw=raw, verify=verify)


def _landed_records(folder: ObjectStoragePath, *, raw: bool, verify: bool) -> Iterator[Any]:
    manifest = read_manifest(folder)
    if manifest is None:
        raise LandingIntegrityError(f"{storage_uri(folder)} has no {MANIFEST}: it is not complete.")
    for part in manifest["parts"]:
        name = part["name"]
        data = _read(folder, name)
        if data is None:
            raise LandingIntegrityError(f"{name} listed in the manifest is missing.")
        if verify:
            _verify_part(name, data, part)
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
            for line in gz:
                record = line.rstrip(b"\n")
                yield record if raw else _decode(name, record)


def _verify_part(name: str, data: bytes, part: Mapping[str, Any]) -> None:
    """The part's bytes against the manifest's sha256, then its record count (decompressed, not kept)."""
    if hashlib.sha256(data).hexdigest() != part["sha256"]:
        raise LandingIntegrityError(f"{name} does not match its sha256 in the manifest.")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as gz:
            count = sum(1 for _ in gz)
    except (OSError, EOFError) as err:
        raise LandingIntegrityError(f"{name} is not a readable gzip file: {err}") from None
    if count != part["records"]:
        raise LandingIntegrityError(f"{name} holds {count} records; the manifest says {part['records']}.")


def _decode(name: str, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise LandingIntegrityError(f"{name} holds a line that is not a JSON object: {line[:80]!r}")
    return record
