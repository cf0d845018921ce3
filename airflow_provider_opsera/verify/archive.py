"""Reading an archive through ``ObjectStoragePath``: the folders of a log type, and each folder's checks.

Every folder under ``<base>/opsera/<log_type>/`` is one landed interval, whatever its name: its
``manifest.json`` says which (``start``/``end``). :func:`read_folder` reads a manifest only;
:func:`check_folder` then checks the current revision's parts (each streamed: sha256 of the stored bytes and
record count of the decompressed lines, memory bounded by a chunk) and the revision chain.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera.landing import MANIFEST, storage_uri
from airflow_provider_opsera.timeutils import to_utc
from airflow_provider_opsera.verify import chain
from airflow_provider_opsera.verify.model import FolderResult, Status

_CHUNK = 1 << 20
_DT_NAME = re.compile(r"^dt=(\d{4}-\d{2}-\d{2}(T\d{2})?)$")


def log_type_root(base_url: str, log_type: str, conn_id: str | None) -> ObjectStoragePath:
    """``<base>/opsera/<log_type>/``, the landing layout of the example DAG."""
    return ObjectStoragePath(base_url.rstrip("/") + "/", conn_id=conn_id or None) / "opsera" / log_type


def list_folders(root: ObjectStoragePath) -> list[ObjectStoragePath]:
    """The folders directly under ``root``, by name (none when ``root`` does not exist)."""
    fs = root.fs
    base = root.path.rstrip("/")
    fs.invalidate_cache(base)
    try:
        entries = fs.ls(base, detail=True)
    except FileNotFoundError:
        return []
    names = sorted(
        str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"
    )
    return [root / name for name in names if name and not name.startswith(".")]


def _read(fs: Any, path: str) -> bytes | None:
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def read_folder(folder: ObjectStoragePath, log_type: str) -> tuple[FolderResult, bytes | None, dict | None]:
    """The folder's manifest (bytes and decoded) and what it says; a missing or unreadable one is a finding."""
    name = folder.path.rstrip("/").rsplit("/", 1)[-1]
    result = FolderResult(name=name, uri=storage_uri(folder))
    data = _read(folder.fs, f"{folder.path.rstrip('/')}/{MANIFEST}")
    if data is None:
        _place_from_revisions(folder, result) or _place_from_name(result)
        if result.placed:
            result.add(Status.MISSING, f"no {MANIFEST}: the folder is not complete")
        else:  # a stray folder: it may hold any interval, the gaps say which ones are not covered
            result.add(
                Status.WARNING, f"no {MANIFEST}, no kept revision, no dt= name: its interval is unknown"
            )
        return result, None, None
    result.manifest_sha256 = hashlib.sha256(data).hexdigest()
    try:
        manifest = json.loads(data)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except ValueError as err:
        result.add(Status.TAMPERED, f"{MANIFEST} is not a JSON object ({err})")
        return result, data, None
    _describe(result, manifest)
    if manifest.get("log_type") not in (None, log_type):
        result.add(Status.TAMPERED, f"{MANIFEST} describes {manifest.get('log_type')} logs, not {log_type}")
    return result, data, manifest


def _describe(result: FolderResult, manifest: Mapping[str, Any]) -> None:
    try:
        result.start, result.end = to_utc(manifest["start"], "start"), to_utc(manifest["end"], "end")
    except (KeyError, ValueError) as err:
        result.add(Status.TAMPERED, f"{MANIFEST} has no valid start/end ({err})")
    parts = manifest.get("parts")
    if isinstance(parts, list):
        result.parts = len(parts)
        result.bytes = sum(p.get("bytes", 0) for p in parts if isinstance(p, Mapping))
    count = manifest.get("record_count")
    result.record_count = count if isinstance(count, int) else None
    revision = manifest.get("revision")
    result.revision = revision if isinstance(revision, int) else None
    fmt = manifest.get("manifest_format", 1)
    result.manifest_format = fmt if isinstance(fmt, int) else None
    result.signed = isinstance(manifest.get("signature"), Mapping)


def _place_from_revisions(folder: ObjectStoragePath, result: FolderResult) -> bool:
    """A folder without manifest.json: its newest kept revision, if any, still says which interval it was."""
    try:
        revisions = chain.list_revisions(folder)
    except (OSError, ValueError):
        return False
    if not revisions:
        return False
    _, newest = revisions[-1]
    try:
        result.start, result.end = to_utc(newest["start"], "start"), to_utc(newest["end"], "end")
    except (KeyError, ValueError, TypeError):
        return False
    return True


def _place_from_name(result: FolderResult) -> bool:
    """The example DAG's ``dt=YYYY-MM-DD`` (or ``dt=YYYY-MM-DDTHH``) names its day (or hour)."""
    match = _DT_NAME.match(result.name)
    if not match:
        return False
    try:
        start = to_utc(match.group(1), "dt")
    except ValueError:
        return False
    result.start = start
    result.end = start.add(hours=1) if match.group(2) else start.add(days=1)
    return True


def check_folder(
    folder: ObjectStoragePath,
    result: FolderResult,
    data: bytes,
    manifest: Mapping[str, Any],
    *,
    key: bytes | None,
    key_id: str | None,
) -> None:
    """The current revision's parts and the folder's revision chain, as findings on ``result``."""
    _check_parts(folder, result, manifest)
    try:
        revisions = chain.list_revisions(folder)
    except ValueError as err:  # a kept revision that is not JSON
        result.add(Status.BROKEN_CHAIN, f"a revision in {chain.REVISIONS_FOLDER}/ is not JSON ({err})")
        return
    for status, message in chain.check_chain(data, manifest, revisions, key=key, key_id=key_id):
        result.add(status, message)


def _check_parts(folder: ObjectStoragePath, result: FolderResult, manifest: Mapping[str, Any]) -> None:
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        result.add(Status.TAMPERED, f"{MANIFEST} lists no parts")
        return
    base = folder.path.rstrip("/")
    total = 0
    for part in parts:
        if not isinstance(part, Mapping) or not isinstance(part.get("name"), str):
            result.add(Status.TAMPERED, f"{MANIFEST} lists a part without a name: {part!r}"[:200])
            continue
        name = part["name"]
        total += part.get("records", 0) if isinstance(part.get("records"), int) else 0
        try:
            sha256, records, size = _measure(folder.fs, f"{base}/{name}")
        except FileNotFoundError:
            result.add(Status.TAMPERED, f"{name} is missing")
            continue
        except (OSError, EOFError, zlib.error) as err:
            result.add(Status.TAMPERED, f"{name} is not a readable gzip file ({err})")
            continue
        if sha256 != part.get("sha256"):
            result.add(
                Status.TAMPERED,
                f"{name}'s sha256 is {sha256[:12]}..., the manifest says {str(part.get('sha256'))[:12]}...",
            )
        if records != part.get("records"):
            result.add(
                Status.TAMPERED, f"{name} holds {records} records, the manifest says {part.get('records')}"
            )
        if isinstance(part.get("bytes"), int) and size != part["bytes"]:
            result.add(Status.TAMPERED, f"{name} is {size} bytes, the manifest says {part['bytes']}")
    if result.record_count is not None and result.record_count != total:
        result.add(
            Status.TAMPERED, f"record_count is {result.record_count}, the parts' counts add up to {total}"
        )


def _measure(fs: Any, path: str) -> tuple[str, int, int]:
    """sha256 and size of the stored bytes and the number of decompressed lines, streamed chunk by chunk."""
    digest = hashlib.sha256()
    size = lines = 0
    last = b"\n"
    inflate = zlib.decompressobj(wbits=31)
    in_member = False
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            while chunk:
                in_member = True
                out = inflate.decompress(chunk)
                if out:
                    lines += out.count(b"\n")
                    last = out[-1:]
                chunk = b""
                if inflate.eof:
                    # Another gzip member may follow (concatenated gzip files are one valid gzip file).
                    chunk, in_member = inflate.unused_data, False
                    inflate = zlib.decompressobj(wbits=31)
    if in_member or size == 0:
        raise EOFError("the gzip stream ends early" if size else "the part is empty")
    if last != b"\n":  # a last line without its newline is still a record
        lines += 1
    return digest.hexdigest(), lines, size
