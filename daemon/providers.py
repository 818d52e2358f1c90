"""OpenAI-compatible chat completions on one shared ``httpx2.AsyncClient`` per provider.

``Provider.complete`` sends ``POST {base_url}/chat/completions`` with the
screenshot as an ``image_url`` part (downscaled by ``daemon.images`` and its
size stated in the prompt), the strategy's ``max_tokens`` (or
``max_completion_tokens``), its ``temperature`` only when set, the MergeStep
as a strict JSON schema in ``response_format`` unless ``structured_output``
is off, and its ``extra_body``. It retries what is worth retrying and turns
every failure into ``StrategyError`` with one of SPEC's kinds; the detail is
built from the error body (``daemon.provider_errors``):

==========================================  ===============================
what happened                               kind (retried?)
==========================================  ===============================
no API key in the env                       ``not_configured`` (no)
an image URL to a provider that cannot      ``not_configured`` (no)
fetch one (``fetch_image_urls: false``)
connect/read failure                        ``connection`` (yes)
httpx2 phase timeout                        ``timeout`` (yes)
408, 409, 425, 429, 5xx                     ``http_status`` (yes)
401, 402, 403, unknown model, daily cap,    ``http_status`` (no; 401, 402,
``x-should-retry: false``, other 4xx        unknown model and cap rest)
a 200 carrying an error (``choices[0]``     ``http_status`` (as its code)
``.error``, ``finish_reason: "error"``)
``finish_reason: "length"`` (truncated)     ``invalid_output`` (no)
200 without usable text                     ``invalid_output`` (no)
==========================================  ===============================

Resting: after a 401, 402, unknown model or daily cap, calls of that
strategy (of every strategy of the provider for 401/402) fail at once with
the same explanation until the rest ends (``CallLedger``; ``status`` shows
it). Every call's ``usage.cost`` and serving ``provider`` go to the ledger
and into the Completion.

Backoff: exponential with full jitter (0.5 s * 2^attempt, capped at 8 s),
or what ``Retry-After`` (seconds or an HTTP date), ``retry-after-ms`` or the
body's ``retry_after_seconds`` asks. A wait longer than the time left (the
caller's ``trio.fail_after(strategy.timeout)``) or than 60 s fails at once
instead of retrying early; at most ``max_retries`` retries.

Cancellation: a call cancelled at any point releases its connection (the
response is closed in a ``finally``); ``tests/test_providers.py`` cancels
many calls under pool contention and checks the pool still serves. A
cancelled image preparation finishes its thread first (well under a
second) and is then dropped.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import logging
import math
import os
import random
import time
import urllib.parse
import urllib.request
import weakref
from typing import TYPE_CHECKING, Any, Final

import httpx2
import msgspec
import trio

from daemon import images, provider_errors
from daemon.errors import StrategyError
from daemon.http11 import SEND_MARK, PoolTransport, SendMark
from daemon.models import Usage
from daemon.response_format import response_format
from daemon.stats import PROVIDER_WIDE, CallLedger, RestState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from daemon.config import ProviderConfig, StrategyConfig

logger = logging.getLogger(__name__)

BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 8.0
RETRY_AFTER_MAX: Final = 60.0  # a longer wait fails the call at once
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
DEFAULT_MAX_TOKENS: Final = 8192
APP_TITLE: Final = "ctxd"

DEFAULT_PROMPT: Final = """\
You read a screenshot of a chat app and return the conversation in it as one
JSON object, and nothing else:
{"participants": {"user": <name of the app's own user or null>,
                  "talker": <name of the other party in a one-to-one chat or null>,
                  "group": <the group's title when the chat is a group, or null>},
 "layout": {"left": "talker" | "user", "right": "talker" | "user"},
 "bubbles": [{"speaker": "talker" | "user", "side": "left" | "right",
              "bbox": [x1, y1, x2, y2], "text": <what the sender typed>,
              "kind": "text" | "photo" | "voice" | "sticker" | "file",
              "sender": <the name shown with the bubble in a group, or null>,
              "time": <the time shown in or beside the bubble, as shown, or null>,
              "quote": {"sender": <name or null>, "text": <the quoted text>} | null}],
 "summary": <one sentence or null>}
bbox is in image pixels, integers, x1 < x2, y1 < y2. Every bubble's side is
the side the layout gives its speaker. Only message bubbles are bubbles: leave
out the status bar, the header, date pills, timestamps, system notices, the
keyboard and the input field (its placeholder or an unsent draft). A bubble's
text is what its sender typed, exactly as written: not its time or read ticks,
not the sender's name, not a quoted message, not an "Edited" or "Forwarded"
label. A voice note or sticker has its kind and empty text, a photo its kind
and its caption (or none), a file its kind and the text typed with it (or
none); a message of emoji only is its emoji; a code block's code is part of
its message's text.
In a thread without bubbles (Slack-like: avatar, bold name, time, text rows)
each message is a bubble: its bbox covers its name row and text rows, sender is
the bold name (also on a follow-up drawn without it), time as shown; reply
counts ("3 replies"), reactions and dividers are not messages. There the side
follows the speaker: in a direct message the person the header names is the
talker (left) and the other sender the user (right) (a header with a lock and
a topic is a private channel, not a direct message); in a channel or a thread
view every message is the talker's unless it is plainly the app user's own,
and group is the channel's name."""

USER_TEXT: Final = "Extract the conversation from this chat screenshot."


def user_text(size: tuple[int, int] | None) -> str:
    """The user message: with the size of the image as sent, when known."""
    if size is None:
        return USER_TEXT
    width, height = size
    return (
        f"{USER_TEXT} The image is {width}x{height} pixels; give every bbox in "
        f"these pixels, inside the image (0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height})."
    )


class ImageInput(msgspec.Struct, frozen=True, weakref=True):
    """The screenshot as the provider receives it: a URL (http, https or data)."""

    url: str

    @classmethod
    def from_bytes(cls, data: bytes, mime: str) -> ImageInput:
        return cls(f"data:{mime};base64,{base64.b64encode(data).decode()}")


class Completion(msgspec.Struct, frozen=True, kw_only=True):
    """A model's answer and what ctxd knows about the call.

    ``image_size`` is the size of the image as sent (the pixels the model's
    boxes are in) and ``original_size`` the screenshot's; both None when
    unknown. ``extract.parse_completion`` scales the boxes back."""

    text: str
    served_model: str | None
    usage: Usage | None
    attempts: int
    served_by: str | None = None  # the upstream provider (OpenRouter's ``provider``)
    finish_reason: str | None = None
    image_size: tuple[int, int] | None = None
    original_size: tuple[int, int] | None = None
    dropped_lines: int | None = None  # the local OCR's uncertain lines (Provenance.dropped_lines)


class _Choice(msgspec.Struct):
    message: dict[str, Any] | None = None
    finish_reason: str | None = None
    error: dict[str, Any] | None = None


class _ChatResponse(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    model: str | None = None
    usage: Usage | None = None
    provider: str | None = None
    error: dict[str, Any] | None = None


class Architecture(msgspec.Struct, frozen=True):
    input_modalities: list[str] | None = None


class ModelInfo(msgspec.Struct, frozen=True):
    """One entry of ``GET /models`` (OpenRouter's fields; others give ``id`` only)."""

    id: str
    architecture: Architecture | None = None
    supported_parameters: list[str] | None = None


class _ModelList(msgspec.Struct):
    data: list[ModelInfo]


_RESPONSE: Final = msgspec.json.Decoder(_ChatResponse)
_MODELS: Final = msgspec.json.Decoder(_ModelList)
_ENCODER: Final = msgspec.json.Encoder()
# Built once: generating the schema costs ~0.5 ms, a third of a miss's CPU.
_RESPONSE_FORMAT: Final = msgspec.Raw(_ENCODER.encode(response_format()))


def retry_delay(headers: httpx2.Headers, now: float | None = None) -> float | None:
    """The delay a response asks for (``retry-after-ms``, ``Retry-After`` in
    seconds or as an HTTP date), or None when it asks none or nonsense
    (negative, not a number, a date in the past). A long delay is returned
    as it is: the caller fails at once rather than retry early."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        value = when - (time.time() if now is None else now)
    if math.isfinite(value) and value >= 0:
        return value
    return None


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))


def request_headers(config: ProviderConfig) -> dict[str, str]:
    """The provider's headers: ``headers`` from the config, with OpenRouter's
    app attribution title (``X-OpenRouter-Title: ctxd``) unless a title is
    configured; a header configured as ``""`` is not sent."""
    headers = dict(config.headers)
    host = urllib.parse.urlsplit(config.base_url).hostname or ""
    titles = {"x-openrouter-title", "x-title"}
    if host.endswith("openrouter.ai") and not any(k.lower() in titles for k in headers):
        headers["X-OpenRouter-Title"] = APP_TITLE
    return {k: v for k, v in headers.items() if v != ""}


def max_tokens_field(config: ProviderConfig) -> str:
    """``max_completion_tokens`` where the API wants it (OpenAI), else ``max_tokens``."""
    if config.max_tokens_field is not None:
        return config.max_tokens_field
    host = urllib.parse.urlsplit(config.base_url).hostname or ""
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


class _Preparing:
    """One image's preparation, shared by the legs that send it (single flight)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: images.Prepared | None = None
        self.error: StrategyError | None = None


class Provider:
    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        client: httpx2.AsyncClient,
        api_key: str | None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.client = client
        self._api_key = api_key
        self._rng = rng or random.Random()
        self.ledger = CallLedger()
        self._tokens_field = max_tokens_field(config)
        self._images: weakref.WeakKeyDictionary[ImageInput, _Preparing] = (
            weakref.WeakKeyDictionary()
        )
        self._image_threads = trio.CapacityLimiter(2)

    @classmethod
    def from_config(
        cls, name: str, config: ProviderConfig, transport: httpx2.AsyncBaseTransport | None = None
    ) -> Provider:
        """A provider with its own pooled client (``transport`` for tests).

        The transport is ``daemon.http11.PoolTransport`` unless the environment
        sets a proxy for the provider's URL: httpx2's own transport speaks
        proxies, ours does not."""
        limits = httpx2.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        )
        if transport is None and not _proxied(config.base_url):
            transport = PoolTransport(
                max_connections=config.max_connections,
                ssl_context=httpx2.create_ssl_context(),
            )
        client = httpx2.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/",
            headers=request_headers(config),
            limits=limits,
            timeout=httpx2.Timeout(120.0, connect=10.0),
            transport=transport,
        )
        # None: the key's variable is unset (not_configured); "": no key needed.
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else ""
        return cls(name, config, client, api_key)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def list_models(self) -> list[ModelInfo] | None:
        """``GET {base_url}/models``: the models the provider serves, or None
        when it has no such list (any error, any shape but ``{"data": [...]}``)."""
        try:
            with _transport_errors(f"from {self.name}"):
                response = await self.client.send(
                    self.client.build_request("GET", "models", headers=self._headers()),
                    stream=True,
                )
            try:
                with _transport_errors("reading the body"):
                    data = await self._read(response)
            finally:
                await response.aclose()
        except (_Retryable, StrategyError) as exc:
            logger.debug("%s: no model list: %s", self.name, exc)
            return None
        if response.status_code != 200:
            logger.debug("%s: no model list (HTTP %d)", self.name, response.status_code)
            return None
        try:
            return _MODELS.decode(data).data
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            logger.debug("%s: no model list: %s", self.name, exc)
            return None

    def request_body(self, strategy: StrategyConfig, image: images.Prepared) -> bytes:
        body: dict[str, Any] = {
            "model": strategy.model,
            "messages": [
                {"role": "system", "content": strategy.prompt or DEFAULT_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": user_text(image.size)},
                        {"type": "image_url", "image_url": {"url": image.url}},
                    ],
                },
            ],
            self._tokens_field: strategy.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if strategy.temperature is not None:
            body["temperature"] = strategy.temperature
        if strategy.structured_output is not False:
            body["response_format"] = _RESPONSE_FORMAT
        for key, value in (strategy.extra_body or {}).items():
            body.setdefault(key, value)  # config refuses the keys set above
        return _ENCODER.encode(body)

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return headers

    async def complete(self, strategy: StrategyConfig, image: ImageInput) -> Completion:
        """The model's answer text, with the served model, usage and image sizes.

        Raises StrategyError; the caller bounds the time (see module docstring)."""
        if self._api_key is None:
            raise StrategyError(
                "not_configured", f"{self.config.api_key_env} is not set for provider {self.name}"
            )
        resting = self.ledger.resting(strategy.name)
        if resting is not None:
            left = resting.until - trio.current_time()
            raise StrategyError(
                "http_status", f"resting {left:.0f}s more ({resting.reason}): {resting.detail}"
            )
        if not image.url.startswith("data:") and not self.config.fetch_image_urls:
            raise StrategyError(
                "not_configured",
                f"provider {self.name} cannot fetch image URLs (fetch_image_urls: false); "
                "send image.path or image.data",
            )
        prepared = await self._prepare(image)
        body = self.request_body(strategy, prepared)
        headers = self._headers()
        attempt = 0
        while True:
            delay: float | None = None
            try:
                completion = await self._attempt(strategy, body, headers, attempt + 1)
            except _Retryable as retry:
                error = retry.error
                delay = retry.delay
            else:
                return msgspec.structs.replace(
                    completion, image_size=prepared.size, original_size=prepared.original_size
                )
            if attempt >= strategy.max_retries:
                raise error
            left = trio.current_effective_deadline() - trio.current_time()
            if delay is not None and (delay >= left or delay > RETRY_AFTER_MAX):
                raise StrategyError(
                    error.kind,
                    f"{error.detail}; the provider asks to wait {delay:g}s, "
                    f"more than the {min(left, RETRY_AFTER_MAX):.3g}s this call may still take",
                )
            wait = delay if delay is not None else backoff(attempt, self._rng)
            if wait >= left:
                raise error  # the retry could not finish in time anyway
            logger.info(
                "%s: %s; retry %d of %d in %.2fs",
                strategy.name,
                error.detail,
                attempt + 1,
                strategy.max_retries,
                wait,
            )
            await trio.sleep(wait)
            attempt += 1

    async def _prepare(self, image: ImageInput) -> images.Prepared:
        """The image as sent: as it is when small enough (its size read from
        the header), else downscaled in a thread, once per image for all
        the legs that send it."""
        size = images.probe(image.url)
        if not images.needs_work(image.url, size):
            return images.Prepared(url=image.url, size=size, original_size=size)
        preparing = self._images.get(image)
        if preparing is None:
            preparing = self._images[image] = _Preparing()
            try:
                preparing.result = await trio.to_thread.run_sync(
                    images.prepare, image.url, limiter=self._image_threads
                )
            except images.TooLarge as exc:
                preparing.error = StrategyError("not_configured", f"image too large: {exc}")
            finally:
                if preparing.result is None and preparing.error is None:  # cancelled
                    del self._images[image]
                preparing.done.set()
        else:
            await preparing.done.wait()
        if preparing.error is not None:
            raise preparing.error
        if preparing.result is None:  # the leg that prepared it was cancelled
            return await self._prepare(image)
        return preparing.result

    async def _attempt(
        self, strategy: StrategyConfig, body: bytes, headers: dict[str, str], attempt: int
    ) -> Completion:
        request = self.client.build_request(
            "POST", "chat/completions", content=body, headers=headers
        )
        # The pool marks the request sent just before its first byte goes
        # out (daemon/http11.py): then it is a call (Spend's ``calls``). A
        # transport that cannot say (httpx2's, behind a proxy; a test's
        # MockTransport) leaves it unknown: the request may have gone out.
        mark = SendMark(on_send=lambda: self.ledger.sent(strategy.name))
        request.extensions[SEND_MARK] = mark
        try:
            try:
                with _transport_errors(f"from {self.name}"):
                    response = await self.client.send(request, stream=True)
                try:
                    with _transport_errors("reading the body"):
                        data = await self._read(response)
                finally:
                    await response.aclose()
            finally:
                if not mark.known:
                    mark.mark_sent()
        except trio.Cancelled:
            # Once the request was on its way the provider may bill it:
            # counted, with its cost unknown (daemon/spend.py). Cancelled
            # while it waited for a connection, nothing went out.
            if mark.sent:
                self.ledger.cancelled_after_send(strategy.name)
            raise
        status = response.status_code
        if status != 200:
            failure = provider_errors.describe(
                status,
                provider_errors.parse_body(data),
                data,
                where=self.name,
                should_retry=response.headers.get("x-should-retry"),
                secret=self._api_key,
            )
            delay = retry_delay(response.headers)
            self._fail(strategy, status, failure, delay)
        return self._parse(strategy, data, attempt)

    def _fail(
        self,
        strategy: StrategyConfig,
        status: int,
        failure: provider_errors.ProviderFailure,
        delay: float | None,
    ) -> None:
        """Raise the failure: retryable or not; start a rest when it calls for one."""
        delay = delay if delay is not None else failure.delay
        error = StrategyError("http_status", failure.detail)
        if failure.rest is not None:
            seconds = max(failure.rest.seconds, delay or 0.0)
            key = PROVIDER_WIDE if failure.rest.scope == "provider" else strategy.name
            self.ledger.rest(
                key,
                RestState(
                    reason=failure.rest.reason,
                    until=trio.current_time() + seconds,
                    detail=failure.detail,
                    status=status,
                ),
            )
            who = f"every strategy of {self.name}" if key == PROVIDER_WIDE else strategy.name
            logger.warning(
                "%s: %s; %s rests for %.0fs (%s)",
                strategy.name,
                failure.detail,
                who,
                seconds,
                failure.rest.reason,
            )
        if failure.retryable:
            raise _Retryable(error, delay)
        raise error

    async def _read(self, response: httpx2.Response) -> bytes:
        chunks = []
        size = 0
        # Decoded bytes, so a gzip bomb counts at its real size; aclosing, so
        # leaving early closes the generator now, not at GC time.
        async with contextlib.aclosing(response.aiter_bytes()) as body:
            async for chunk in body:
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise StrategyError(
                        "invalid_output", f"response larger than {MAX_RESPONSE_BYTES} bytes"
                    )
                chunks.append(chunk)
        return b"".join(chunks)

    def _parse(self, strategy: StrategyConfig, data: bytes, attempt: int) -> Completion:
        try:
            parsed = _RESPONSE.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # includes ValidationError
            raise StrategyError("invalid_output", f"not a chat completion: {exc}") from None
        cost = parsed.usage.cost if parsed.usage is not None else None
        # Every answer is billed, valid or not: its usage goes to Spend.
        # (OpenRouter returns usage.cost on every response; the request's old
        # ``usage: {include: true}`` is deprecated and has no effect.)
        self.ledger.record(strategy.name, cost, parsed.provider, parsed.usage)
        choice = parsed.choices[0] if parsed.choices else None
        error = parsed.error or (choice.error if choice is not None else None)
        if error is not None or (choice is not None and choice.finish_reason == "error"):
            # The model failed after the answer had started (a 200 carrying an error).
            code = (error or {}).get("code")
            status = code if isinstance(code, int) and 400 <= code <= 599 else 502
            body = {"error": error or {"message": "finish_reason is error"}}
            failure = provider_errors.describe(
                status, body, data, where=self.name, secret=self._api_key
            )
            failure = msgspec.structs.replace(failure, detail="in a 200: " + failure.detail)
            self._fail(strategy, status, failure, None)
        if choice is None:
            raise StrategyError("invalid_output", "the completion has no choices")
        message = choice.message or {}
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if choice.finish_reason == "length":
            tokens = parsed.usage.completion_tokens if parsed.usage is not None else None
            cap = strategy.max_tokens or DEFAULT_MAX_TOKENS
            raise StrategyError(
                "invalid_output",
                f"truncated: the answer reached the {self._tokens_field} cap of {cap} "
                f"({tokens if tokens is not None else '?'} completion tokens, reasoning included); "
                "raise the strategy's max_tokens",
            )
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal.strip():
            raise StrategyError("invalid_output", f"the model refused: {refusal.strip()[:200]}")
        if choice.finish_reason == "content_filter":
            raise StrategyError(
                "invalid_output", "the provider's content filter stopped the answer"
            )
        if not isinstance(content, str) or not content.strip():
            raise StrategyError("invalid_output", "the completion has no text")
        return Completion(
            text=content,
            served_model=parsed.model,
            usage=parsed.usage,
            attempts=attempt,
            served_by=parsed.provider,
            finish_reason=choice.finish_reason,
        )


def _proxied(url: str) -> bool:
    """Whether the environment (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``...) proxies ``url``."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    return not bypass(parts.hostname or "", proxies)


@contextlib.contextmanager
def _transport_errors(where: str) -> Iterator[None]:
    """httpx2's timeouts and transport errors as retryable StrategyErrors."""
    try:
        yield
    except httpx2.TimeoutException as exc:
        raise _Retryable(StrategyError("timeout", f"{type(exc).__name__} {where}")) from None
    except (httpx2.TransportError, httpx2.DecodingError) as exc:  # a broken gzip body too
        detail = f"{type(exc).__name__} {where}: {exc}"[:300]
        raise _Retryable(StrategyError("connection", detail)) from None


class _Retryable(Exception):
    def __init__(self, error: StrategyError, delay: float | None = None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.delay = delay
