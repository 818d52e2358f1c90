"""The ``error.data`` of each error code, as Structs (their schemas go in
``components.schemas``), and which method gives which error."""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET, UnsetType

from daemon.errors import BadInputReason, InvalidParamsReason, StrategyErrorKind


class BadInputData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32003: why the image was refused, and which field."""

    reason: BadInputReason
    field: str
    path: str | UnsetType = UNSET
    size: int | UnsetType = UNSET
    max_image_bytes: int | UnsetType = UNSET
    max_length: int | UnsetType = UNSET
    given: list[str] | UnsetType = UNSET
    errno: int | UnsetType = UNSET


class InvalidParamsData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32602."""

    reason: InvalidParamsReason
    field: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET
    resource: str | UnsetType = UNSET


class InvalidRequestData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32600, when a limit was passed."""

    max_batch: int | UnsetType = UNSET
    max_message_bytes: int | UnsetType = UNSET
    line_timeout: float | UnsetType = UNSET


class MethodNotFoundData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32601."""

    method: str


class StrategyFailure(msgspec.Struct, frozen=True, kw_only=True):
    """One strategy's failure in a race; a local_ocr queue's failures carry
    their figures too."""

    error: StrategyErrorKind
    detail: str
    position: int | UnsetType = UNSET
    expected_wait_s: float | UnsetType = UNSET
    waiting: int | UnsetType = UNSET
    max_queue: int | UnsetType = UNSET
    waited_s: float | UnsetType = UNSET
    read_s: float | UnsetType = UNSET


class AllStrategiesFailedData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32001."""

    strategies: dict[str, StrategyFailure]


class DeadlineExceededData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32002."""

    pending: list[str]


class ForbiddenData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32004: the peer's credentials (SO_PEERCRED)."""

    uid: int
    gid: int


class OverloadedData(msgspec.Struct, frozen=True, kw_only=True):
    """``error.data`` of -32005: the figures of the limit that was reached."""

    in_flight: int | UnsetType = UNSET
    max_in_flight: int | UnsetType = UNSET
    max_connections: int | UnsetType = UNSET
    races: int | UnsetType = UNSET
    max_races: int | UnsetType = UNSET
    image_bytes: int | UnsetType = UNSET
    max_race_image_bytes: int | UnsetType = UNSET


# name, code, message, the Struct of error.data (None: no data)
ERRORS: Final[list[tuple[str, int, str, type[msgspec.Struct] | None]]] = [
    ("parse_error", -32700, "parse error", None),
    ("invalid_request", -32600, "invalid request", InvalidRequestData),
    ("method_not_found", -32601, "method not found", MethodNotFoundData),
    ("invalid_params", -32602, "invalid params", InvalidParamsData),
    ("internal_error", -32603, "internal error", None),
    ("shutting_down", -32000, "the daemon is draining; request not started", None),
    (
        "all_strategies_failed",
        -32001,
        "every strategy failed or gave invalid output",
        AllStrategiesFailedData,
    ),
    (
        "deadline_exceeded",
        -32002,
        "the request's deadline passed before a valid result",
        DeadlineExceededData,
    ),
    (
        "bad_input",
        -32003,
        "image unreadable, too large, not an image or not allowed",
        BadInputData,
    ),
    ("forbidden", -32004, "the peer's uid/gid is not allowed", ForbiddenData),
    ("overloaded", -32005, "connection or in-flight limit reached", OverloadedData),
]
# Errors any method can give; analyze adds the rest.
COMMON: Final = ["invalid_params", "internal_error", "shutting_down", "overloaded"]
ANALYZE: Final = ["all_strategies_failed", "deadline_exceeded", "bad_input"]
