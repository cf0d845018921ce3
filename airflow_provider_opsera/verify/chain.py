"""The manifest revision chain: reading the revisions of a folder, and checking that the chain holds.

The format (landing's ``manifest_format`` 2): each manifest carries ``revision`` (1, 2, ...), ``previous``
(the sha256 hex of the exact bytes of the revision it replaces; ``null`` for revision 1), ``reason`` and
optionally ``signature`` = ``{"alg": "HMAC-SHA256", "key_id": <conn id>, "value": <hex>}`` over the canonical
JSON of the manifest without its signature. Every revision's exact bytes are also kept at
``_manifests/manifest-<revision:06d>.json``. Format 1 manifests have no chain.

The check is pure (:func:`check_chain`: bytes and dicts in, findings out); reading is :func:`list_revisions`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_opsera.verify.model import Status

REVISIONS_FOLDER = "_manifests"
SIGNATURE_ALG = "HMAC-SHA256"
_REVISION_FILE = re.compile(r"^manifest-(\d{6,})\.json$")

try:  # landing's own readers, once the chain is part of landing
    from airflow_provider_opsera.landing import (  # type: ignore[attr-defined]
        canonical_bytes,
        list_revisions,
        manifest_digest,
        signature_valid,
    )
except ImportError:  # the same format, read here until then

    def canonical_bytes(obj: Any) -> bytes:
        """The bytes a signature covers: sorted keys, no spaces, UTF-8."""
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def manifest_digest(data: bytes) -> str:
        """The sha256 hex of a manifest revision's exact bytes (what the next revision's ``previous`` holds)."""
        return hashlib.sha256(data).hexdigest()

    def signature_valid(manifest: Mapping[str, Any], key: bytes) -> bool:
        """Whether the manifest's HMAC-SHA256 signature verifies with ``key``."""
        signature = manifest.get("signature")
        if not isinstance(signature, Mapping) or signature.get("alg") != SIGNATURE_ALG:
            return False
        unsigned = {k: v for k, v in manifest.items() if k != "signature"}
        expected = hmac.new(key, canonical_bytes(unsigned), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, str(signature.get("value", "")))

    def list_revisions(folder: ObjectStoragePath) -> list[tuple[bytes, dict]]:
        """Every revision kept in the folder's ``_manifests/``, by revision number: (exact bytes, manifest)."""
        fs, base = folder.fs, f"{folder.path.rstrip('/')}/{REVISIONS_FOLDER}"
        try:
            entries = fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        numbered = []
        for entry in entries:
            match = _REVISION_FILE.match(str(entry).rstrip("/").rsplit("/", 1)[-1])
            if match:
                numbered.append((int(match.group(1)), f"{base}/{match.group(0)}"))
        revisions = []
        for _, path in sorted(numbered):
            with fs.open(path, "rb") as handle:
                data = handle.read()
            revisions.append((data, json.loads(data)))
        return revisions


def check_chain(
    current_bytes: bytes,
    current: Mapping[str, Any],
    revisions: Sequence[tuple[bytes, Mapping[str, Any]]],
    *,
    key: bytes | None,
    key_id: str | None,
) -> list[tuple[Status, str]]:
    """What is wrong with a folder's chain (and signatures), as (status, sentence) pairs; empty when it holds.

    Revisions 1..n must be contiguous, revision k's ``previous`` the digest of revision k-1's bytes (``null``
    for 1), and ``manifest.json``'s bytes revision n's bytes. A signature is checked when a key is given;
    present without a key, it is a warning.
    """
    fmt = current.get("manifest_format", 1)
    if not isinstance(fmt, int) or fmt < 2:
        return [(Status.WARNING, f"no chain (format {fmt})")]
    problems: list[tuple[Status, str]] = []
    if not revisions:
        return [(Status.BROKEN_CHAIN, f"no revisions in {REVISIONS_FOLDER}/ (format {fmt} keeps every one)")]
    numbers = [m.get("revision") for _, m in revisions]
    expected = list(range(1, len(revisions) + 1))
    if numbers != expected:
        problems.append(
            (
                Status.BROKEN_CHAIN,
                f"revisions in {REVISIONS_FOLDER}/ are {_listing(numbers)}, not 1..{len(revisions)}"
                + _holes(numbers),
            )
        )
    for (before, _), (_, manifest) in itertools.pairwise(revisions):
        if manifest.get("previous") != manifest_digest(before):
            problems.append(
                (
                    Status.BROKEN_CHAIN,
                    f"revision {manifest.get('revision')}'s previous ({_short(manifest.get('previous'))}) is not "
                    f"the digest of the revision before it ({_short(manifest_digest(before))})",
                )
            )
    first = revisions[0][1]
    if first.get("revision") == 1 and first.get("previous") is not None:
        problems.append((Status.BROKEN_CHAIN, "revision 1 names a previous revision"))
    last_bytes, last = revisions[-1]
    if current.get("revision") != last.get("revision"):
        problems.append(
            (
                Status.BROKEN_CHAIN,
                f"manifest.json is revision {current.get('revision')}, the newest kept is {last.get('revision')}",
            )
        )
    elif current_bytes != last_bytes:
        problems.append(
            (
                Status.BROKEN_CHAIN,
                f"manifest.json differs from {REVISIONS_FOLDER}/manifest-{int(last.get('revision') or 0):06d}.json",
            )
        )
    return problems + _signatures(current, revisions, key=key, key_id=key_id)


def _signatures(
    current: Mapping[str, Any],
    revisions: Sequence[tuple[bytes, Mapping[str, Any]]],
    *,
    key: bytes | None,
    key_id: str | None,
) -> list[tuple[Status, str]]:
    signed = [
        (f"revision {m.get('revision')}", m) for _, m in revisions if isinstance(m.get("signature"), Mapping)
    ]
    if isinstance(current.get("signature"), Mapping) and all(current != m for _, m in signed):
        signed.append(("manifest.json", current))  # not a kept revision's copy: checked on its own
    if not signed:
        return [(Status.WARNING, "not signed (a signing key was given)")] if key is not None else []
    if key is None:
        ids = sorted({str(m["signature"].get("key_id")) for _, m in signed})
        return [(Status.WARNING, f"signed (key {', '.join(ids)}) but no signing key given: not checked")]
    problems = []
    for what, manifest in signed:
        if not signature_valid(manifest, key):
            named = manifest["signature"].get("key_id")
            other = f" (signed with key {named})" if named and key_id and named != key_id else ""
            problems.append(
                (Status.BAD_SIGNATURE, f"{what}'s signature does not verify with key {key_id}{other}")
            )
    if not isinstance(current.get("signature"), Mapping):
        problems.append((Status.WARNING, "manifest.json is not signed, though earlier revisions are"))
    return problems


def _listing(numbers: Sequence[Any]) -> str:
    shown = [str(n) for n in numbers[:12]]
    return ", ".join(shown) + (", ..." if len(numbers) > 12 else "")


def _holes(numbers: Sequence[Any]) -> str:
    ints = [n for n in numbers if isinstance(n, int)]
    if not ints:
        return ""
    missing = sorted(set(range(1, max(ints) + 1)) - set(ints))
    return f": revision {_listing(missing)} missing" if missing else ""


def _short(digest: Any) -> str:
    return f"{digest[:12]}..." if isinstance(digest, str) and len(digest) > 12 else repr(digest)
