"""What records of each log type look like: field order, default value pools, and how one record is built.

Builders take a ``row`` (the record's drawn field values) plus its ``_id``, ``createdAt`` and a 64-bit hash,
and return the record with its fields in the seed's order. Any field may be overridden through ``row``;
fields the row lacks are derived (from the hash, or from other fields, as the pipeline ``api_response`` is).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_opsera.catalogue import USER_ACTIVITY_TYPES, OpseraLogType

ACCOUNT = "org-opsera-dnd-acc0"
_M64 = (1 << 64) - 1
_M96 = (1 << 96) - 1

#: Default weights of the split field of each log type (``type``, or ``scope`` for tokens).
PIPELINE_TYPES: dict[str, float] = {"sdlc": 34, "sfdc": 26, "ai-ml": 22, "sql": 18}
TOKEN_SCOPES: dict[str, float] = {"api": 80, "api-readonly": 12, "security-logs": 8}
USER_TYPES: dict[str, float] = dict.fromkeys(USER_ACTIVITY_TYPES, 2.0) | {
    "authentication": 30,
    "pipeline": 30,
    "registry": 8,
    "task": 8,
    "tag": 4,
    "pipeline_template": 4,
}
SPLIT_FIELD: dict[OpseraLogType, str] = {
    OpseraLogType.USER_ACTIVITY: "type",
    OpseraLogType.AUDIT: "type",
    OpseraLogType.TOKEN_ACTIVITY: "scope",
    OpseraLogType.PIPELINE_ACTIVITY: "type",
}

_CRUD: dict[str, float] = {"create": 3, "update": 6, "delete": 1}
ACTIONS_BY_TYPE: dict[str, dict[str, float]] = {
    "authentication": {"login": 1},
    "pipeline": {
        "start": 30,
        "webhook-start": 30,
        "update": 15,
        "stop": 5,
        "create": 5,
        "approve": 5,
        "reset": 3,
        "resume": 3,
        "delete": 2,
        "duplicate": 2,
    },
    "pipeline_template": {"create": 2, "update": 4, "publish": 2, "duplicate": 1},
    "task": {"start": 4, "stop": 1} | _CRUD,
    "feature_flags": {"update": 1},
}

#: Steps of a typical pipeline: (name, index, tool_identifier, stepIdentifier, step_configuration).
STEPS: tuple[tuple[str, int, str, str, dict[str, Any]], ...] = (
    ("source", 0, "gitlab", "gitlab", {"tool": "gitlab", "service": "gitlab", "branch": "main"}),
    ("build", 1, "jenkins", "jenkins", {"tool": "jenkins", "jobType": "BUILD"}),
    (
        "anchore",
        2,
        "consumer.response",
        "anchore-integrator",
        {"tool": "event based automation", "topic": "opsera.pipeline.response"},
    ),
    ("sonar", 3, "sonar", "sonar", {"tool": "sonar", "jobType": "SONAR_SCAN"}),
    ("unit-tests", 4, "junit", "junit", {"tool": "junit", "jobType": "UNIT_TESTING"}),
    ("approval", 5, "approval", "approval", {"tool": "approval", "approvalGate": True}),
    ("deploy", 6, "argo", "argo", {"tool": "argo", "syncMode": "auto"}),
)
STEP_BY_NAME = {s[0]: s for s in STEPS}
PIPELINE_STATUSES: dict[str, float] = {
    "success": 50,
    "running": 14,
    "failed": 8,
    "analyzing": 5,
    "queued": 5,
    "processing event": 4,
    "pending": 3,
    "error": 3,
    "paused": 3,
    "stopped": 2,
}
_ACTION_BY_STATUS = {
    "analyzing": "start confirmation",
    "running": "running",
    "processing event": "running",
    "queued": "queued",
    "pending": "queued",
    "created": "queued",
    "success": "complete",
    "successful": "complete",
    "passed": "complete",
    "completed": "complete",
    "paused": "approval",
    "stopped": "stop",
    "cancelled": "stop",
    "canceled": "stop",
}
_MESSAGE_BY_STATUS = {
    "analyzing": "{title} Scan Started Successfully",
    "running": "{title} step is running",
    "processing event": "{title} event is being processed",
    "queued": "{title} step is queued",
    "pending": "{title} step is pending",
    "success": "{title} completed successfully",
    "paused": "{title} is waiting for approval",
    "stopped": "{title} was stopped",
    "failed": "{title} step failed",
    "error": "{title} step ended with an error",
}
TOKEN_TARGETS: dict[str, float] = {
    "/v1/logs/user/tokens": 20,
    "/v1/logs/user/actions": 20,
    "/v1/logs/pipelines": 25,
    "/v2/logs/audit/user": 25,
    "/v1/pipelines": 10,
}


def mix64(x: int) -> int:
    """SplitMix64 finalizer: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hex24(h: int) -> str:
    """A Mongo-id-looking 24-hex-digit string from a 64-bit hash."""
    return "%024x" % (h * 0x100000001 & _M96)  # %-format: the fastest spelling, on a hot path


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of values that, unlike ``hash()``, is the same in every process."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def object_id(seconds: int, salt: int, counter: int) -> str:
    """A Mongo ObjectId: 4 bytes of creation time, 5 of per-source salt, 3 of counter."""
    return f"{seconds & 0xFFFFFFFF:08x}{salt & 0xFFFFFFFFFF:010x}{counter & 0xFFFFFF:06x}"


@dataclass(frozen=True)
class Pools:
    """The account's users, pipelines and tokens, drawn once from the simulator's seed."""

    users: tuple[tuple[str, str], ...]
    pipelines: tuple[str, ...]
    tokens: tuple[tuple[str, str], ...]

    @classmethod
    def from_seed(cls, seed: int) -> Pools:
        rng = random.Random(f"opsera-pools-{seed}")
        first = [
            "ana",
            "ben",
            "chen",
            "dara",
            "eli",
            "femi",
            "gus",
            "hana",
            "ivan",
            "jo",
            "kai",
            "lena",
            "mo",
        ]
        last = ["patel", "smith", "garcia", "kim", "nguyen", "okafor", "rossi", "silva", "weber", "cohen"]
        users = [
            ("5e1cbf251c26d68f7ce6361e", "support@opsera.io"),
            ("60157c8c70628140f776e359", "ops@opsera.io"),
        ]
        while len(users) < 40:
            email = f"{rng.choice(first)}.{rng.choice(last)}{rng.randrange(100)}@example.com"
            if email not in {u[1] for u in users}:
                users.append((hex24(rng.getrandbits(64)), email))
        pipelines = ["611e7dca57f4eff66e9db084"] + [hex24(rng.getrandbits(64)) for _ in range(24)]
        tokens = [("61043b2bbcb6d95b55adc5fd", users[0][0])]
        tokens += [(hex24(rng.getrandbits(64)), rng.choice(users)[0]) for _ in range(15)]
        return cls(tuple(users), tuple(pipelines), tuple(tokens))


@dataclass
class ColumnSpec:
    """How to draw some fields of a record: weighted choices among value dicts, maybe conditional on a parent field."""

    values: list[dict[str, Any]]
    weights: list[float]
    depends_on: str | None = None
    #: For a parent field value, weights over ``values`` replacing ``weights``.
    weights_by_parent: dict[Any, list[float]] = field(default_factory=dict)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.values[0]) if self.values else ()


def _is_weights(choices: object) -> bool:
    """A ``{value: weight}`` dict; any other dict (``step_configuration={...}``) is one fixed value."""
    return (
        isinstance(choices, Mapping)
        and bool(choices)
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in choices.values())
    )


def is_absent(choices: object) -> bool:
    """``[]``: no choices at all, so records go without the field."""
    return isinstance(choices, (list, tuple, set, frozenset)) and not choices


def choice_spec(field_name: str, choices: object) -> ColumnSpec:
    """A one-field column from a fixed value, a list (uniform) or a ``{value: weight}`` dict."""
    if _is_weights(choices):
        assert isinstance(choices, Mapping)
        pairs = list(choices.items())
    elif isinstance(choices, (list, tuple, set, frozenset)):
        pairs = [(v, 1.0) for v in choices]
    else:
        pairs = [(choices, 1.0)]
    if any(w < 0 for _, w in pairs) or (pairs and sum(w for _, w in pairs) <= 0):
        raise ValueError(f"weights of {field_name!r} must be non-negative and not all zero")
    return ColumnSpec([{field_name: v} for v, _ in pairs], [float(w) for _, w in pairs])


def _actions_spec() -> ColumnSpec:
    names = sorted({a for t in ACTIONS_BY_TYPE.values() for a in t} | set(_CRUD))
    spec = ColumnSpec([{"action": a} for a in names], [_CRUD.get(a, 0.0) for a in names], depends_on="type")
    for t, table in ACTIONS_BY_TYPE.items():
        spec.weights_by_parent[t] = [table.get(a, 0.0) for a in names]
    return spec


def default_columns(log_type: OpseraLogType, pools: Pools) -> list[ColumnSpec]:
    """The default way each field of a log type is drawn (the split field last, so it can be replaced)."""
    if log_type in (OpseraLogType.USER_ACTIVITY, OpseraLogType.AUDIT):
        users = ColumnSpec(
            [{"user_id": i, "user_email": e} for i, e in pools.users], [1.0] * len(pools.users)
        )
        return [users, _actions_spec(), choice_spec("type", USER_TYPES)]
    if log_type is OpseraLogType.TOKEN_ACTIVITY:
        tokens = ColumnSpec(
            [{"token_id": t, "user_id": u} for t, u in pools.tokens], [1.0] * len(pools.tokens)
        )
        return [tokens, choice_spec("target", TOKEN_TARGETS), choice_spec("scope", TOKEN_SCOPES)]
    # step_index and the tool follow from step_name in the builder, so overriding step_name stays coherent
    steps = choice_spec(
        "step_name", dict(zip(STEP_BY_NAME, (1.0, 1.0, 0.8, 0.8, 0.7, 0.3, 0.6), strict=True))
    )
    return [
        choice_spec("user_id", [u for u, _ in pools.users[:12]]),
        # the seed's example pipeline is left to scripted runs, so a sensor watching it sees only those
        choice_spec("pipeline_id", list(pools.pipelines[1:])),
        steps,
        choice_spec("status", PIPELINE_STATUSES),
        choice_spec("type", PIPELINE_TYPES),
    ]


def _build_user(row: dict[str, Any], oid: str, created: str, h: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"_id": oid, "user_id": row.get("user_id"), "user_email": row.get("user_email")}
    if "type" in row:
        rec["type"] = row["type"]
    rec["action"] = row.get("action", "update")
    rec["target_id"] = row["target_id"] if "target_id" in row else hex24(h)
    rec["account"] = row.get("account", ACCOUNT)
    rec["createdAt"] = created
    rec["updatedAt"] = created
    rec["__v"] = row.get("__v", 0)
    return rec


def _build_token(row: dict[str, Any], oid: str, created: str, h: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"_id": oid, "token_id": row.get("token_id")}
    if "scope" in row:
        rec["scope"] = row["scope"]
    rec["target"] = row.get("target", "/v1/logs/user/tokens")
    rec["user_id"] = row.get("user_id")
    rec["account"] = row.get("account", ACCOUNT)
    rec["createdAt"] = created
    rec["updatedAt"] = created
    rec["__v"] = row.get("__v", 0)
    return rec


@functools.lru_cache(maxsize=4096)
def step_id_for(pipeline_id: str, step_name: str) -> str:
    """The id of a pipeline's step: stable, so every event of that step carries the same one."""
    if (pipeline_id, step_name) == ("611e7dca57f4eff66e9db084", "anchore"):
        return "611508513ce36642d3180dc8"  # the seed's example
    return hex24(stable_hash("step", pipeline_id, step_name))


@functools.lru_cache(maxsize=4096)
def pipeline_message(step_name: str, status: str) -> str:
    title = step_name.replace("-", " ").title()
    template = _MESSAGE_BY_STATUS.get(status)
    if template is None:
        return f"{title} step finished with status {status}"
    return template.format(title=title)


def build_pipeline(row: dict[str, Any], oid: str, created: str, h: int) -> dict[str, Any]:
    """A pipeline-activity record like the seed's example; ``api_response`` mirrors status, message, run."""
    step_name = row.get("step_name", "anchore")
    template = STEP_BY_NAME.get(step_name)
    pipeline_id = row.get("pipeline_id", "611e7dca57f4eff66e9db084")
    user_id = row.get("user_id", "60157c8c70628140f776e359")
    step_id = row.get("step_id") or step_id_for(pipeline_id, step_name)
    status = row.get("status", "success")
    message = row.get("message") or pipeline_message(step_name, status)
    run_count = row["run_count"] if "run_count" in row else 1 + (h >> 7) % 300
    rec: dict[str, Any] = {
        "_id": oid,
        "user_id": user_id,
        "pipeline_id": pipeline_id,
        "tool_identifier": row.get("tool_identifier") or (template[2] if template else "consumer.response"),
        "step_id": step_id,
        "step_index": row.get("step_index", template[1] if template else 0),
        "step_name": step_name,
        "step_configuration": dict(row.get("step_configuration") or (template[4] if template else {})),
        "action": row.get("action") or _ACTION_BY_STATUS.get(status, "failed"),
        "api_response": {
            "pipelineId": pipeline_id,
            "customerId": user_id,
            "stepId": step_id,
            "message": message,
            "status": status,
            "runCount": run_count,
            "stepIdentifier": template[3] if template else step_name,
        },
        "message": message,
        "status": status,
        "run_count": run_count,
    }
    if "type" in row:
        rec["type"] = row["type"]
    rec["createdAt"] = created
    rec["updatedAt"] = created
    rec["__v"] = row.get("__v", 0)
    return rec


Builder = Callable[[dict[str, Any], str, str, int], dict[str, Any]]
BUILDERS: dict[OpseraLogType, Builder] = {
    OpseraLogType.USER_ACTIVITY: _build_user,
    OpseraLogType.AUDIT: _build_user,
    OpseraLogType.TOKEN_ACTIVITY: _build_token,
    OpseraLogType.PIPELINE_ACTIVITY: build_pipeline,
}
#: Fields each builder writes: a drawn field outside these is an extra one, appended after ``__v``.
LAYOUT: dict[OpseraLogType, frozenset[str]] = {
    OpseraLogType.USER_ACTIVITY: frozenset(
        (
            "_id",
            "user_id",
            "user_email",
            "type",
            "action",
            "target_id",
            "account",
            "createdAt",
            "updatedAt",
            "__v",
        )
    ),
    OpseraLogType.TOKEN_ACTIVITY: frozenset(
        ("_id", "token_id", "scope", "target", "user_id", "account", "createdAt", "updatedAt", "__v")
    ),
    OpseraLogType.PIPELINE_ACTIVITY: frozenset(
        (
            "_id",
            "user_id",
            "pipeline_id",
            "tool_identifier",
            "step_id",
            "step_index",
            "step_name",
            "step_configuration",
            "action",
            "api_response",
            "message",
            "status",
            "run_count",
            "type",
            "createdAt",
            "updatedAt",
            "__v",
        )
    ),
}
LAYOUT[OpseraLogType.AUDIT] = LAYOUT[OpseraLogType.USER_ACTIVITY]
