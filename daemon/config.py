"""Typed configuration (SPEC §7), loaded and checked before ``trio.run``.

Every section is a frozen msgspec Struct that forbids unknown keys, so a typo
is an error, not a silently ignored setting. ``load_config`` raises
``ConfigError`` whose text is one line naming the key path and what is wrong;
``__main__`` prints it and exits 78 (EX_CONFIG).

Relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import math
import os
import re
import socket as socket_module
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from daemon.errors import ConfigError

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]

MIB = 1024 * 1024


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class SocketConfig(_Section, frozen=True):
    path: str = "var/ctxd.sock"
    # File mode of the socket; YAML reads ``0660`` as an octal int already,
    # a quoted "0660" is read as octal too.
    mode: int | str = 0o660
    # None: the daemon's own uid and root.
    allowed_uids: list[NonNegativeInt] | None = None
    allowed_gids: list[NonNegativeInt] = msgspec.field(default_factory=list)
    max_message_bytes: PositiveInt = 16 * MIB
    max_connections: PositiveInt = 1024
    idle_timeout: PositiveFloat = 300.0
    # ctxd extensions (not in SPEC §7, documented in docs/configuration.md):
    line_timeout: PositiveFloat = 30.0
    write_timeout: PositiveFloat = 30.0
    max_in_flight: PositiveInt = 1024
    max_requests_per_connection: PositiveInt = 64

    @property
    def file_mode(self) -> int:
        return _parse_mode(self.mode)


class StoreConfig(_Section, frozen=True):
    path: str = "var/store"
    map_size_mb: PositiveInt = 1024
    max_events_per_key: PositiveInt = 20
    # ctxd extension: most events one write transaction commits (1 = one
    # fsync per event, for comparison in bench/store_bench.py).
    max_batch_events: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 1000


class ProviderConfig(_Section, frozen=True):
    base_url: str
    api_key_env: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    max_connections: PositiveInt = 16
    # ctxd extensions (docs/configuration.md): the request field that caps
    # the answer (None: max_completion_tokens on api.openai.com, else
    # max_tokens); whether the provider fetches an image.url itself (a local
    # server does not: such a leg is not_configured).
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    fetch_image_urls: bool = True


# Request fields ctxd sets from strategy keys; extra_body may not set them.
MANAGED_BODY_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "response_format",
    }
)

LOCAL_OCR_MODEL = "rapidocr-onnxruntime"  # the engine of a local_ocr strategy (a package name)


def local_ocr_model() -> str:
    """What a local_ocr strategy's ``model`` reads by default: the engine and
    its version, the very name its workers give every result (provenance,
    ``_model``, logs), so ``status`` says the same (``rapidocr-onnxruntime
    1.4.4``); the bare package name when the ``ocr`` extra is missing."""
    try:
        return f"{LOCAL_OCR_MODEL} {metadata.version(LOCAL_OCR_MODEL)}"
    except metadata.PackageNotFoundError:
        return LOCAL_OCR_MODEL


class PriceConfig(_Section, frozen=True):
    """USD per million tokens (SPEC §7 ``price``), for a provider that does
    not say what a call cost (OpenRouter does: its figure wins)."""

    prompt_per_mtok: Annotated[float, msgspec.Meta(ge=0)]
    completion_per_mtok: Annotated[float, msgspec.Meta(ge=0)]


class BudgetConfig(_Section, frozen=True):
    """SPEC §7 ``budget``: at most this many USD per UTC day, calls per minute."""

    usd_per_day: PositiveFloat | None = None
    calls_per_minute: PositiveInt | None = None


class StartAfter(_Section, frozen=True):
    """``start: {after: seconds}``: a hedged request (see ``daemon/race.py``)."""

    after: Annotated[float, msgspec.Meta(ge=0)]


# When a strategy starts in a race that answers a request (SPEC §7 ``start``).
StartPolicy = Literal["always", "on_failure", "upgrade_only"] | StartAfter


class StrategyConfig(_Section, frozen=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: Literal["openai_chat", "local_ocr"] = "openai_chat"
    provider: str | None = None
    model: str = ""
    rank: NonNegativeInt = 0
    timeout: PositiveFloat = 60.0
    max_retries: NonNegativeInt = 2
    prompt: str | None = None
    # local_ocr only (ctxd extensions): inferences at once, each in its own
    # worker process (default 1); the side the app's own user is on
    # (default right).
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    user_side: Literal["left", "right"] | None = None
    # local_ocr only: jobs that may wait for a worker (default 16); past it a
    # job ends at once with the error kind ``overloaded`` (daemon/ocr/pool.py).
    max_queue: Annotated[int, msgspec.Meta(ge=0, le=10000)] | None = None
    # openai_chat only (SPEC §7): the answer's cap in tokens (None: 8192),
    # temperature (None: not sent), the MergeStep schema as response_format
    # (None: on), a mapping merged into the request body.
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    structured_output: bool | None = None
    extra_body: dict[str, Any] | None = None
    # SPEC §7, spend (daemon/spend.py): prices when the provider gives no
    # cost, a budget, and when the strategy starts in a race.
    price: PriceConfig | None = None
    budget: BudgetConfig | None = None
    start: StartPolicy = "always"


class LlmConfig(_Section, frozen=True):
    premium_cache_timeout: PositiveFloat = 30.0
    request_timeout: PositiveFloat = 60.0
    max_background_tasks: PositiveInt = 64
    upgrade_retry_after: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    # ctxd extensions (docs/configuration.md): races alive at once (misses
    # and upgrades, answered or not), and the screenshot bytes they may hold
    # (as sent: a data URL is base64). Past either, a miss gets -32005.
    max_races: PositiveInt = 256
    max_race_image_mb: PositiveInt = 128


class InputsConfig(_Section, frozen=True):
    allowed_dirs: list[str] = msgspec.field(default_factory=list)
    max_image_bytes: PositiveInt = 10 * MIB


class ShutdownConfig(_Section, frozen=True):
    drain_timeout: PositiveFloat = 30.0


class LoggingConfig(_Section, frozen=True):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class MetricsConfig(_Section, frozen=True):
    """SPEC §7 ``metrics``: Prometheus text at ``/metrics`` (daemon/metrics.py)."""

    listen: str  # host:port on loopback, or unix:/absolute/path

    @property
    def address(self) -> tuple[Literal["tcp", "unix"], str]:
        """("unix", path) or ("tcp", "host:port"); ValueError saying what is wrong."""
        if self.listen.startswith("unix:"):
            path = self.listen.removeprefix("unix:")
            if not path.startswith("/"):
                raise ValueError("a Unix socket needs an absolute path: unix:/run/ctxd/m.sock")
            return "unix", path
        host, _, port = self.listen.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{self.listen!r} is not host:port or unix:/path")
        if host.strip("[]") not in ("localhost", "::1") and not host.startswith("127."):
            raise ValueError(f"{host!r} is not a loopback address (127.0.0.1, ::1, localhost)")
        return "tcp", self.listen


class FleetConfig(_Section, frozen=True):
    """Hosts sharing one cache and one race per key on a Redis-protocol server
    (docs/fleet.md). Absent: the host is alone, as before."""

    url: str | None = None  # redis://host:port/db, rediss://..., unix:///path
    cluster_nodes: list[str] | None = None  # host:port seeds of a Redis Cluster
    sentinel_nodes: list[str] | None = None  # host:port of Sentinels watching the primary
    sentinel_service: str | None = None  # the name they monitor it under
    host_id: str = ""  # "": the host name
    password_env: str | None = None
    ca_file: str | None = None  # rediss:// only
    timeout: PositiveFloat = 0.25  # seconds a request waits for the server
    # ctxd extensions (docs/fleet.md):
    max_events_per_key: PositiveInt = 20  # history kept per key on the server
    # seconds a dead host's lease outlives it; at least 1: the holder renews
    # it every third of that, and a lease of a few ms expires before it can
    lease_ttl: Annotated[float, msgspec.Meta(ge=1.0)] = 10.0
    publish_batch: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100  # events per round trip

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class Config(_Section, frozen=True):
    socket: SocketConfig = msgspec.field(default_factory=SocketConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    providers: dict[str, ProviderConfig] = msgspec.field(default_factory=dict)
    strategies: list[StrategyConfig] = msgspec.field(default_factory=list)
    llm: LlmConfig = msgspec.field(default_factory=LlmConfig)
    inputs: InputsConfig = msgspec.field(default_factory=InputsConfig)
    shutdown: ShutdownConfig = msgspec.field(default_factory=ShutdownConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    fleet: FleetConfig | None = None
    metrics: MetricsConfig | None = None

    def rank_of(self) -> Callable[[str], int]:
        """A lookup of strategy rank by name; strategies not configured (any
        more), and ``"unknown"``, rank below every configured one."""
        ranks = {s.name: s.rank for s in self.strategies}
        return lambda name: ranks.get(name, -1)

    def secrets(self) -> list[str]:
        """The API key values present in the environment, for log redaction."""
        found = []
        for provider in self.providers.values():
            if provider.api_key_env:
                value = os.environ.get(provider.api_key_env)
                if value:
                    found.append(value)
        password = self.fleet.password() if self.fleet is not None else None
        if password:
            found.append(password)
        return found


def _parse_mode(mode: int | str) -> int:
    value = int(mode, 8) if isinstance(mode, str) else mode
    if not 0 <= value <= 0o777:
        raise ValueError(mode)
    return value


_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _key_path(raw: str) -> str:
    """Turn msgspec's ``$.socket.mode`` / ``$.strategies[0].name`` into ``socket.mode``."""
    return raw.lstrip(".") or "<top level>"


def _describe(error: msgspec.ValidationError, prefix: str = "") -> str:
    text = str(error)
    match = _PATH_RE.search(text)
    where = _key_path(match.group("path")) if match else "<top level>"
    if prefix:
        where = prefix if where == "<top level>" else f"{prefix}.{where}"
    what = _PATH_RE.sub("", text)
    unknown = re.match(r"Object contains unknown field `([^`]*)`", what)
    if unknown:
        key = unknown.group(1)
        where = key if where == "<top level>" else f"{where}.{key}"
        return f"{where}: unknown key"
    return f"{where}: {what[0].lower()}{what[1:]}"


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, type-check and cross-check the config file at ``path``.

    Returns a Config whose relative paths are made absolute against the
    file's directory. Raises ConfigError (one line) on any problem.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}: YAML error{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: <top level>: expected a mapping of sections")
    providers = data.get("providers")
    if isinstance(providers, dict):
        # msgspec reports a bad dict value as ``providers[...]``; name it.
        for name, value in providers.items():
            try:
                msgspec.convert(value, ProviderConfig, strict=True)
            except msgspec.ValidationError as exc:
                raise ConfigError(f"{file}: {_describe(exc, f'providers.{name}')}") from None
    try:
        config = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{file}: {_describe(exc)}") from None
    _check(config, file)
    return _resolve_paths(config, file.resolve().parent)


def _check(config: Config, file: Path) -> None:
    def fail(key: str, what: str) -> None:
        raise ConfigError(f"{file}: {key}: {what}")

    try:
        config.socket.file_mode  # noqa: B018 - validates the mode
    except ValueError:
        fail("socket.mode", f"{config.socket.mode!r} is not an octal file mode like 0660")
    if not config.socket.path:
        fail("socket.path", "must not be empty")
    if not config.store.path:
        fail("store.path", "must not be empty")
    for name, provider in config.providers.items():
        if not re.match(r"^https?://[^/\s]+", provider.base_url):
            fail(f"providers.{name}.base_url", "must be an http:// or https:// URL")
        if provider.api_key_env is not None and not re.match(
            r"^[A-Za-z_][A-Za-z0-9_]*$", provider.api_key_env
        ):
            fail(f"providers.{name}.api_key_env", "must be an environment variable name")
    largest = math.ceil(config.inputs.max_image_bytes * 4 / 3) + 64  # as a data URL
    if config.llm.max_race_image_mb * MIB < largest:
        fail(
            "llm.max_race_image_mb",
            f"{config.llm.max_race_image_mb} MiB cannot hold one screenshot of "
            f"inputs.max_image_bytes ({config.inputs.max_image_bytes} bytes, "
            f"{largest} as a data URL)",
        )
    names: set[str] = set()
    ranks: dict[int, str] = {}
    for i, strategy in enumerate(config.strategies):
        key = f"strategies[{i}]"
        if strategy.name in names:
            fail(f"{key}.name", f"strategy name {strategy.name!r} is used twice")
        names.add(strategy.name)
        if strategy.rank in ranks:
            fail(
                f"{key}.rank",
                f"rank {strategy.rank} is already used by strategy {ranks[strategy.rank]!r}",
            )
        ranks[strategy.rank] = strategy.name
        if strategy.kind == "openai_chat":
            if strategy.provider is None:
                fail(f"{key}.provider", "an openai_chat strategy needs a provider")
            elif strategy.provider not in config.providers:
                fail(f"{key}.provider", f"no provider named {strategy.provider!r}")
            if not strategy.model:
                fail(f"{key}.model", "an openai_chat strategy needs a model")
            for name in ("workers", "user_side", "max_queue"):
                if getattr(strategy, name) is not None:
                    fail(f"{key}.{name}", "only a local_ocr strategy takes this key")
            for field in sorted(set(strategy.extra_body or ()) & MANAGED_BODY_FIELDS):
                fail(f"{key}.extra_body.{field}", "ctxd sets this field; use the strategy's key")
            _check_spend(strategy, key, fail)
        else:
            if strategy.provider is not None:
                fail(f"{key}.provider", "a local_ocr strategy takes no provider")
            for name in ("max_tokens", "temperature", "structured_output", "extra_body"):
                if getattr(strategy, name) is not None:
                    fail(f"{key}.{name}", "only an openai_chat strategy takes this key")
            if strategy.price is not None:
                fail(f"{key}.price", "a local_ocr strategy runs on this host: nothing bills it")
            if strategy.budget is not None and strategy.budget.usd_per_day is not None:
                fail(f"{key}.budget.usd_per_day", "a local_ocr strategy costs no USD")
            _check_spend(strategy, key, fail)
    if config.strategies and all(s.start == "upgrade_only" for s in config.strategies):
        last = len(config.strategies) - 1
        fail(f"strategies[{last}].start", "every strategy is upgrade_only: nothing answers a miss")
    lowest = min(range(len(config.strategies)), key=lambda i: config.strategies[i].rank, default=-1)
    if lowest >= 0 and config.strategies[lowest].start == "upgrade_only":
        fail(
            f"strategies[{lowest}].start",
            "upgrade_only on the lowest-ranked strategy never runs: an upgrade races only "
            "strategies ranked above the cached result, and no result ranks below it",
        )
    if config.fleet is not None:
        _check_fleet(config.fleet, fail)
    if config.metrics is not None:
        try:
            config.metrics.address  # noqa: B018 - validates listen
        except ValueError as exc:
            fail("metrics.listen", str(exc))


def _check_spend(strategy: StrategyConfig, key: str, fail: Callable[[str, str], None]) -> None:
    """Price, budget and start values msgspec's types let through but that mean nothing."""
    price = strategy.price
    if price is not None:
        for name in ("prompt_per_mtok", "completion_per_mtok"):
            if not math.isfinite(getattr(price, name)):
                fail(f"{key}.price.{name}", "must be a finite number of USD")
    budget = strategy.budget
    if budget is not None:
        if budget.usd_per_day is None and budget.calls_per_minute is None:
            fail(f"{key}.budget", "give usd_per_day, calls_per_minute or both")
        if budget.usd_per_day is not None and not math.isfinite(budget.usd_per_day):
            fail(f"{key}.budget.usd_per_day", "must be a finite number of USD")
    if isinstance(strategy.start, StartAfter) and not math.isfinite(strategy.start.after):
        fail(f"{key}.start.after", "must be a finite number of seconds")


def _check_fleet(fleet: FleetConfig, fail: Callable[[str, str], None]) -> None:
    """SPEC §7 ``fleet``: one server (``url``) or cluster seeds, never both;
    no password in the URL (it would be logged): ``password_env`` names it."""
    given = (fleet.url, fleet.cluster_nodes, fleet.sentinel_nodes)
    if sum(v is not None for v in given) != 1:
        fail("fleet", "give either url or cluster_nodes (or sentinel_nodes)")
    if fleet.url is not None:
        url = urlsplit(fleet.url)
        if url.scheme not in ("redis", "rediss", "unix"):
            fail("fleet.url", "must be a redis://, rediss:// or unix:// URL")
        if url.password is not None or url.username is not None:
            fail("fleet.url", "must not carry credentials; name the password in password_env")
        if url.scheme == "unix" and not url.path:
            fail("fleet.url", "a unix:// URL needs the socket path (unix:///run/redis.sock)")
        if url.scheme != "unix":
            try:
                port = url.port
            except ValueError:
                port = -1
            if not url.hostname or port == -1 or url.path.strip("/") not in ("", *_DBS):
                fail("fleet.url", f"{fleet.url!r} is not redis://host[:port][/db]")
        if fleet.ca_file is not None and url.scheme != "rediss":
            fail("fleet.ca_file", "only a rediss:// url takes a CA file")
    seeds = (("cluster_nodes", fleet.cluster_nodes), ("sentinel_nodes", fleet.sentinel_nodes))
    for name, nodes in seeds:
        for i, node in enumerate(nodes or ()):
            host, _, port_text = node.rpartition(":")
            if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                fail(f"fleet.{name}[{i}]", f"{node!r} is not host:port")
        if nodes == []:
            fail(f"fleet.{name}", "must name at least one node")
    if fleet.ca_file is not None and fleet.cluster_nodes is not None:
        fail("fleet.ca_file", "TLS to a cluster is not supported; use url: rediss://")
    if fleet.ca_file is not None and fleet.sentinel_nodes is not None:
        fail("fleet.ca_file", "TLS through Sentinel is not supported; use url: rediss://")
    if (fleet.sentinel_nodes is None) != (fleet.sentinel_service is None):
        fail("fleet.sentinel_service", "the primary's name; given with sentinel_nodes only")
    if fleet.sentinel_service is not None and not re.match(
        r"^[A-Za-z0-9._-]{1,128}$", fleet.sentinel_service
    ):
        fail("fleet.sentinel_service", "1-128 characters of letters, digits and . _ -")
    if fleet.host_id and not re.match(r"^[A-Za-z0-9._:-]{1,128}$", fleet.host_id):
        fail("fleet.host_id", "1-128 characters of letters, digits and . _ : -")
    if fleet.password_env is not None:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", fleet.password_env):
            fail("fleet.password_env", "must be an environment variable name")
        elif not os.environ.get(fleet.password_env):
            fail("fleet.password_env", f"${fleet.password_env} is not set")


_DBS = tuple(str(i) for i in range(16))


def _resolve_paths(config: Config, base: Path) -> Config:
    def absolute(p: str) -> str:
        return str(base / p) if not os.path.isabs(p) else p

    socket = msgspec.structs.replace(config.socket, path=absolute(config.socket.path))
    store = msgspec.structs.replace(config.store, path=absolute(config.store.path))
    inputs = msgspec.structs.replace(
        config.inputs, allowed_dirs=[absolute(d) for d in config.inputs.allowed_dirs]
    )
    strategies = [
        msgspec.structs.replace(s, model=local_ocr_model())
        if s.kind == "local_ocr" and not s.model
        else s
        for s in config.strategies
    ]
    fleet = config.fleet
    if fleet is not None:
        fleet = msgspec.structs.replace(
            fleet,
            host_id=fleet.host_id or socket_module.gethostname(),
            ca_file=absolute(fleet.ca_file) if fleet.ca_file is not None else None,
        )
        if fleet.ca_file is not None and not os.path.isfile(fleet.ca_file):
            raise ConfigError(f"fleet.ca_file: {fleet.ca_file} is not a readable file")
    if len(os.fsencode(socket.path)) > 107:
        # sun_path holds 108 bytes including the terminating NUL.
        raise ConfigError(f"socket.path: {socket.path} is longer than a Unix socket path may be")
    return msgspec.structs.replace(
        config, socket=socket, store=store, inputs=inputs, strategies=strategies, fleet=fleet
    )
