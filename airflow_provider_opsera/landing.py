"""Landing records in object storage: gzipped NDJSON parts, then ``manifest.json``, atomic by manifest.

A folder is complete when it holds a manifest; every part the manifest lists is then complete and matches
its record count and sha256. A rerun of the same folder keeps that promise at every moment, and a run that
dies half way leaves the previous complete state readable:

1. new parts are numbered after the highest part already in the folder (``part-00000.ndjson.gz`` on a first
   run), so they never overwrite a part the current manifest lists; each is published whole (object stores
   only show an object once its upload completes; a local file is written under a hidden name and renamed);
2. ``manifest.json`` is replaced last, in one step (an object PUT, or a local rename);
3. only then are the parts the new manifest does not list (the previous run's, or a crashed run's) removed.

Records are written byte for byte as given (the API's own JSON), one per line, and streamed: memory holds
one batch and the compressor's buffers, never a part or the interval.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Literal, overload

import msgspec
import pendulum
from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera import __version__
from airflow_provider_opsera.exceptions import LandingIntegrityError

MANIFEST = "manifest.json"
#: Records per part unless the caller says otherwise: a few MB to a few tens of MB compressed.
DEFAULT_RECORDS_PER_PART = 100_000
#: Bumped when the manifest's shape changes in a way a reader must know about.
MANIFEST_FORMAT = 1
_PART = re.compile(r"^part-(\d{5,})\.ndjson\.gz$")
_TEMP = re.compile(r"^\.(part-\d{5,}\.ndjson\.gz|manifest\.json)\.[0-9a-f]{32}\.tmp$")
_LOCAL_PROTOCOLS = frozenset({"file", "local"})


def part_name(index: int) -> str:
    return f"part-{index:05d}.ndjson.gz"


def storage_uri(path: ObjectStoragePath) -> str:
    """The path's URI without the connection id Airflow shows in ``str()`` (``s3://conn@bucket/...``)."""
    return f"{path.protocol}://{path.path}" if path.protocol else str(path)


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
    """Writes files into one folder so that each appears whole or not at all."""

    def __init__(self, folder: ObjectStoragePath) -> None:
        self.folder = folder
        self.fs = folder.fs
        self.base = folder.path.rstrip("/")
        # Object stores publish an object when its upload completes; a local file needs a rename for that.
        self.local = folder.protocol in _LOCAL_PROTOCOLS or not folder.protocol
        if self.local:
            self.fs.makedirs(self.base, exist_ok=True)

    def full(self, name: str) -> str:
        return f"{self.base}/{name}"

    def open(self, name: str) -> tuple[BinaryIO, Callable[[bool], None]]:
        """A binary file to write ``name`` through, and ``done(ok)`` to publish it (or drop it)."""
        target = self.full(name)
        temp = self.full(f".{name}.{uuid.uuid4().hex}.tmp") if self.local else target
        # The filesystem itself, not ObjectStoragePath.open: that wrapper reports lineage on every write().
        handle: BinaryIO = self.fs.open(temp, "wb")

        def done(ok: bool) -> None:
            if not ok and not self.local:
                # Closing an object-store file commits the upload: abandon it instead, and remove whatever
                # part of it may have been committed already.
                discard = getattr(handle, "discard", None)
                try:
                    if discard is not None:
                        discard()
                        # fsspec files close on garbage collection; a discarded one has nothing to close.
                        with contextlib.suppress(Exception):
                            handle.closed = True  # type: ignore[misc]
                    else:
                        handle.close()
                finally:
                    self.remove(target)
                return
            handle.close()
            if not self.local:
                return
            if ok:
                self.fs.mv(temp, target)
            else:
                self.remove(temp)

        return handle, done

    def write_bytes(self, name: str, data: bytes) -> None:
        handle, done = self.open(name)
        try:
            handle.write(data)
        except BaseException:
            done(False)
            raise
        done(True)

    def exists(self, name: str) -> bool:
        return bool(self.fs.exists(self.full(name)))

    def remove(self, full_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(full_path)

    def names(self) -> list[str]:
        self.fs.invalidate_cache(self.base)
        try:
            entries = self.fs.ls(self.base, detail=False)
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

    def __init__(
        self, publisher: _Publisher, records_per_part: int, compresslevel: int, first: int = 0
    ) -> None:
        self.publisher = publisher
        self.first = first
        self.records_per_part = records_per_part
        self.compresslevel = compresslevel
        self.parts: list[dict[str, Any]] = []
        self._open: tuple[gzip.GzipFile, _HashingWriter, Callable[[bool], None]] | None = None
        self._count = 0

    def _start(self) -> tuple[gzip.GzipFile, _HashingWriter, Callable[[bool], None]]:
        handle, done = self.publisher.open(part_name(self.first + len(self.parts)))
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
                "name": part_name(self.first + len(self.parts)),
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
            # The parts of a failed run are listed by no manifest: remove them (a crashed process leaves
            # them to the next run, which removes whatever its manifest does not list).
            for part in self.parts:
                self.publisher.remove(self.publisher.full(part["name"]))


def land(
    batches: Iterable[Sequence[bytes]],
    folder: ObjectStoragePath,
    metadata: Mapping[str, Any],
    *,
    records_per_part: int = DEFAULT_RECORDS_PER_PART,
    compresslevel: int = 6,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write record batches (JSON bytes, one record each) to ``folder`` as parts, then the manifest.

    ``metadata`` (log type, interval, ...) goes into the manifest, which gets ``record_count``, ``parts``
    (name, records, bytes, sha256 each), ``provider_version`` and ``written_at`` besides. Returns the
    manifest. If ``batches`` raises, the parts written so far are removed, the previous manifest and its
    parts stay as they were, and the error propagates.
    """
    if records_per_part < 1:
        raise ValueError(f"records_per_part must be at least 1, not {records_per_part}.")
    publisher = _Publisher(folder)
    existing = [int(m.group(1)) for m in map(_PART.match, publisher.names()) if m]
    sink = _PartSink(publisher, records_per_part, compresslevel, first=max(existing, default=-1) + 1)
    try:
        for batch in batches:
            if batch:
                sink.write(batch)
            if on_batch is not None:
                on_batch(len(batch))
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    manifest: dict[str, Any] = {
        **metadata,
        "folder": storage_uri(folder),
        "format": "ndjson.gz",
        "record_count": sum(p["records"] for p in sink.parts),
        "parts": sink.parts,
        "provider_version": __version__,
        "manifest_format": MANIFEST_FORMAT,
        "written_at": pendulum.now("UTC").isoformat(),
    }
    publisher.write_bytes(MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
    _remove_stale(publisher, {p["name"] for p in sink.parts})
    return manifest


def _remove_stale(publisher: _Publisher, keep: set[str]) -> None:
    """Remove parts the new manifest does not list, and hidden temporary files of interrupted runs."""
    for name in publisher.names():
        if (_PART.match(name) and name not in keep) or _TEMP.match(name):
            publisher.remove(publisher.full(name))


# -- reading ------------------------------------------------------------------------------------------------
def read_manifest(folder: ObjectStoragePath) -> dict[str, Any] | None:
    """The folder's manifest, or ``None`` when the folder is not (yet) complete."""
    try:
        with folder.fs.open(f"{folder.path.rstrip('/')}/{MANIFEST}", "rb") as handle:
            return json.loads(handle.read())
    except FileNotFoundError:
        return None


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
    base = folder.path.rstrip("/")
    for part in manifest["parts"]:
        name = part["name"]
        try:
            with folder.fs.open(f"{base}/{name}", "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise LandingIntegrityError(f"{name} listed in the manifest is missing.") from None
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
