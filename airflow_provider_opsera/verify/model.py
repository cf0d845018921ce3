"""What a verification finds: statuses, findings, and the results per folder, per interval and overall.

A status is a kind (an enum), ordered by severity: an interval or folder takes the most severe status of
its findings. ``ok`` and ``warning`` pass; every other status fails the verification.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pendulum import DateTime


class Status(str, enum.Enum):
    """The status of an interval (or a folder), least severe first."""

    OK = "ok"
    WARNING = "warning"
    DRIFT = "drift"
    MISSING = "missing"
    OVERLAP = "overlap"
    BAD_SIGNATURE = "bad_signature"
    BROKEN_CHAIN = "broken_chain"
    TAMPERED = "tampered"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def failed(self) -> bool:
        return self not in (Status.OK, Status.WARNING)

    @property
    def severity(self) -> int:
        return _ORDER.index(self)

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_ORDER = list(Status)
_MEANINGS = {
    Status.OK: "manifest present, every part matches, chain (and signature) holds",
    Status.WARNING: "passes, with a remark (e.g. no chain: format 1 manifest; signature not checked)",
    Status.DRIFT: "the API's count now differs from the archived record count",
    Status.MISSING: "no manifest covers (part of) the interval: a gap",
    Status.OVERLAP: "two manifests cover the same time",
    Status.BAD_SIGNATURE: "a manifest signature does not verify with the signing key",
    Status.BROKEN_CHAIN: "the revision chain does not hold (missing revision, wrong previous digest)",
    Status.TAMPERED: "a part is missing or its sha256 or record count differs from the manifest",
}


def worst(statuses: Any) -> Status:
    """The most severe of ``statuses`` (``ok`` for none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


@dataclass(frozen=True)
class Finding:
    """One thing found: its status, a sentence, and the folder it is about (``None``: the interval's own)."""

    status: Status
    message: str
    folder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "message": self.message, "folder": self.folder}

    def text(self) -> str:
        return f"{self.folder}: {self.message}" if self.folder else self.message


@dataclass
class FolderResult:
    """One folder under ``<base>/opsera/<log_type>/``: its manifest's interval and what its checks found."""

    name: str
    uri: str
    start: DateTime | None = None
    end: DateTime | None = None
    record_count: int | None = None
    parts: int | None = None
    bytes: int | None = None
    revision: int | None = None
    manifest_format: int | None = None
    #: sha256 of manifest.json's exact bytes: pins, in the report, the manifest that was verified.
    manifest_sha256: str | None = None
    signed: bool = False
    api_count: int | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def status(self) -> Status:
        return worst(f.status for f in self.findings)

    @property
    def span(self) -> tuple[DateTime, DateTime] | None:
        """The folder's ``[start, end)``, when its manifest (or a kept revision, or its name) says it."""
        return (self.start, self.end) if self.start is not None and self.end is not None else None

    @property
    def placed(self) -> bool:
        return self.span is not None

    def touches(self, lo: DateTime, hi: DateTime) -> bool:
        span = self.span
        return span is not None and span[0] < hi and span[1] > lo

    def add(self, status: Status, message: str) -> None:
        self.findings.append(Finding(status, message, self.name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.name,
            "uri": self.uri,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "status": self.status.value,
            "record_count": self.record_count,
            "api_count": self.api_count,
            "parts": self.parts,
            "bytes": self.bytes,
            "revision": self.revision,
            "manifest_format": self.manifest_format,
            "manifest_sha256": self.manifest_sha256,
            "signed": self.signed,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class IntervalResult:
    """One expected interval of the requested range (one calendar cell)."""

    start: DateTime
    end: DateTime
    folders: list[FolderResult] = field(default_factory=list)
    #: The interval's own findings (gaps, overlaps, the API's count of a gap); the folders' come on top.
    own: list[Finding] = field(default_factory=list)
    #: The parts of the interval no manifest covers.
    gaps: list[tuple[DateTime, DateTime]] = field(default_factory=list)
    #: The API's count of those parts now (with ``against_api``).
    gap_api_count: int | None = None

    @property
    def findings(self) -> list[Finding]:
        return [*self.own, *(f for folder in self.folders for f in folder.findings)]

    @property
    def status(self) -> Status:
        return worst(f.status for f in self.findings)

    @property
    def records(self) -> int | None:
        counts = [f.record_count for f in self.folders if f.record_count is not None]
        return sum(counts) if counts else None

    @property
    def parts(self) -> int | None:
        counts = [f.parts for f in self.folders if f.parts is not None]
        return sum(counts) if counts else None

    @property
    def api_records(self) -> int | None:
        counts = [f.api_count for f in self.folders] + (
            [self.gap_api_count] if self.gap_api_count is not None else []
        )
        known = [c for c in counts if c is not None]
        return sum(known) if known and len(known) == len(counts) else None

    @property
    def drift(self) -> int | None:
        """API now minus archived, over the folders whose API count is known (``None``: not compared)."""
        changes = [
            f.api_count - f.record_count
            for f in self.folders
            if f.api_count is not None and f.record_count is not None
        ]
        return sum(changes) if changes else None

    @property
    def revisions(self) -> list[int]:
        return sorted({f.revision for f in self.folders if f.revision is not None})

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "status": self.status.value,
            "records": self.records,
            "parts": self.parts,
            "api_records": self.api_records,
            "drift": self.drift,
            "revisions": self.revisions,
            "gaps": [[_iso(a), _iso(b)] for a, b in self.gaps],
            "gap_api_records": self.gap_api_count,
            "folders": [f.name for f in self.folders],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class VerificationReport:
    """The whole verification: what was asked, every interval, every folder read, and the verdict."""

    base_url: str
    log_type: str
    start: DateTime
    end: DateTime
    interval: str
    against_api: bool
    signing_conn_id: str | None
    verified_at: DateTime
    provider_version: str
    intervals: list[IntervalResult]
    #: Every folder found under the log type's prefix whose manifest was read (or could not be).
    folders: list[FolderResult]
    #: Findings about the archive that belong to no interval (an unreadable folder outside the range, ...).
    general: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every interval is ``ok`` or ``warning`` and nothing else failed."""
        return not any(i.status.failed for i in self.intervals) and not any(
            f.status.failed for f in self.general
        )

    def counts(self) -> dict[str, int]:
        tally = Counter(i.status for i in self.intervals)
        return {s.value: tally[s] for s in Status if tally[s]}

    def summary_line(self) -> str:
        counts = self.counts()
        parts = ", ".join(f"{n} {Status(s).label}" for s, n in counts.items())
        verdict = "VERIFIED" if self.ok else "FAILED"
        extra = f"; {len(self.general)} archive-level finding(s)" if self.general else ""
        noun = "interval" if len(self.intervals) == 1 else "intervals"
        return f"{verdict}: {len(self.intervals)} {noun} ({parts}){extra}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_format": 1,
            "ok": self.ok,
            "summary": self.summary_line(),
            "counts": self.counts(),
            "base_url": self.base_url,
            "log_type": self.log_type,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "interval": self.interval,
            "against_api": self.against_api,
            "signing_conn_id": self.signing_conn_id,
            "verified_at": _iso(self.verified_at),
            "provider_version": self.provider_version,
            "statuses": {s.value: s.meaning for s in Status},
            "intervals": [i.to_dict() for i in self.intervals],
            "folders": [f.to_dict() for f in self.folders],
            "general": [f.to_dict() for f in self.general],
        }

    def summary(self, limit: int = 50) -> dict[str, Any]:
        """A small dict for XCom: the verdict, the counts and the first ``limit`` problems."""
        problems = [
            f"[{_iso(i.start)}, {_iso(i.end)}) {i.status.label}: " + "; ".join(f.text() for f in i.findings)
            for i in self.intervals
            if i.status is not Status.OK
        ] + [f"{f.status.label}: {f.text()}" for f in self.general]
        return {
            "ok": self.ok,
            "summary": self.summary_line(),
            "counts": self.counts(),
            "base_url": self.base_url,
            "log_type": self.log_type,
            "from": _iso(self.start),
            "to": _iso(self.end),
            "interval": self.interval,
            "against_api": self.against_api,
            "problems": problems[:limit],
            "more_problems": max(0, len(problems) - limit),
        }


def _iso(moment: DateTime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
