"""Server settings, laid out like Centrifugo v6's configuration file.

Sources, strongest first: ``ROOMCAST_*`` environment variables (the documented
shortcuts such as ``ROOMCAST_PORT`` and nested ``ROOMCAST_CLIENT__PING_INTERVAL``
style names), then the YAML or JSON file named by ``ROOMCAST_CONFIG``, then the
defaults below. Every other module reads settings from a ``Settings`` object;
nothing else looks at the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> object:
    """Turn Centrifugo-style durations ("300s", "1m30s", "250ms") into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos == len(text) and text:
            return total
        raise ValueError(f"invalid duration {value!r}: use e.g. '30s', '5m', '1h30m', '250ms'")
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


#: what a namespace accepts as publication data (Centrifugo's names): JSON, a JSON object,
#: or any bytes from Protobuf clients and the server API's b64data
DataFormat = Literal["json", "json_object", "binary"]


def _unset_format(value: object) -> object:
    """Centrifugo's unset value, ``""``: the namespace takes the channel-wide format."""
    return None if value == "" else value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ChannelOptions(_Section):
    """Per-namespace channel options (Centrifugo names and meaning)."""

    presence: bool = Field(False, description="Keep presence information for channels.")
    join_leave: bool = Field(False, description="Emit join and leave events.")
    force_push_join_leave: bool = Field(False, description="Push join/leave to all subscribers.")
    history_size: int = Field(0, ge=0, description="Publications kept per channel (0 = none).")
    history_ttl: Seconds = Field(0.0, description="How long history lives after the last publish.")
    history_meta_ttl: Seconds | None = Field(
        None, description="How long the stream position (offset, epoch) is kept; default global."
    )
    force_positioning: bool = False
    allow_positioning: bool = False
    force_recovery: bool = Field(False, description="Every subscription is recoverable.")
    allow_recovery: bool = False
    force_recovery_mode: Literal["stream", "cache"] = "stream"
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_anonymous: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_anonymous: bool = False
    allow_history_for_client: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_anonymous: bool = False
    allow_user_limited_channels: bool = False
    channel_regex: str | None = Field(None, description="Pattern for the name after the namespace.")
    allowed_delta_types: list[Literal["fossil"]] = Field(
        default_factory=list, description="Delta compressions subscribers may negotiate."
    )
    delta_publish: bool = Field(
        False, description="Send publications as fossil deltas to subscribers that negotiated it."
    )
    publication_data_format: Annotated[DataFormat | None, BeforeValidator(_unset_format)] = Field(
        None,
        description="json, json_object or binary (see channel.publication_data_format); "
        "unset takes the channel-wide value.",
    )

    @field_validator("channel_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


class Namespace(ChannelOptions):
    name: str = Field(pattern=r"^[-a-zA-Z0-9_]{2,}$")


class ChannelSettings(_Section):
    without_namespace: ChannelOptions = Field(default_factory=ChannelOptions)
    namespaces: list[Namespace] = Field(default_factory=list)
    max_length: int = Field(255, gt=0, description="Longest channel name accepted.")
    namespace_boundary: str = Field(":", min_length=1, max_length=1)
    private_prefix: str = Field("$", min_length=1, max_length=1)
    user_boundary: str = Field("#", min_length=1, max_length=1)
    user_separator: str = Field(",", min_length=1, max_length=1)
    history_meta_ttl: Seconds = Field(720 * 3600.0, description="Stream position retention.")
    publication_data_format: DataFormat = Field(
        "json",
        description="Publication data accepted where a namespace does not say: json (checked "
        "on every publish, error 107 otherwise), json_object, or binary (any bytes from "
        "Protobuf clients and b64data; a JSON subscriber sent non-JSON data is closed, 3506).",
    )

    @model_validator(mode="after")
    def _unique_namespaces(self) -> ChannelSettings:
        seen: set[str] = set()
        for ns in self.namespaces:
            if ns.name in seen:
                raise ValueError(f"namespace {ns.name!r} is defined twice")
            seen.add(ns.name)
        return self


class TokenSettings(_Section):
    """Keys and checks for JWTs (RFC 8725: alg pinned to the key type)."""

    hmac_secret_key: str = Field("", description="HS256/384/512 secret, at least 32 bytes.")
    hmac_previous_secret_key: str = Field("", description="Accepted too, for secret rotation.")
    rsa_public_key: str = Field("", description="PEM public key for RS256/384/512.")
    ecdsa_public_key: str = Field("", description="PEM public key for ES256/384/512.")
    jwks_public_endpoint: str = Field("", description="JWKS URL; keys selected by kid.")
    jwks_refresh_interval: Seconds = Field(300.0, description="JWKS cache lifetime.")
    jwks_min_refetch_interval: Seconds = Field(30.0, description="Throttle for unknown kids.")
    audience: str = ""
    issuer: str = ""
    user_id_claim: str = "sub"
    require_exp: bool = Field(True, description="Refuse tokens without an exp claim.")
    leeway: Seconds = Field(0.0, description="Clock skew tolerated on exp/nbf/iat.")

    @field_validator("hmac_secret_key", "hmac_previous_secret_key")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if value and len(value.encode()) < 32:
            raise ValueError("HMAC secret must be at least 32 bytes (RFC 7518 section 3.2)")
        return value

    @property
    def configured(self) -> bool:
        return bool(
            self.hmac_secret_key
            or self.rsa_public_key
            or self.ecdsa_public_key
            or self.jwks_public_endpoint
        )


class SubscriptionTokenSettings(TokenSettings):
    enabled: bool = Field(False, description="Use these keys for subscription tokens.")


class RateLimit(_Section):
    rate_per_second: float = Field(100.0, gt=0, description="Commands per second, sustained.")
    burst: int = Field(200, gt=0, description="Commands allowed in a burst.")
    max_rejections: int = Field(
        50,
        gt=0,
        description=(
            "Rejected commands within rejection_window before the 3013 disconnect; allowed "
            "commands in between do not reset the count, so a steady flooder is cut too."
        ),
    )
    rejection_window: Seconds = Field(
        10.0, gt=0, description="The window max_rejections is counted over."
    )


class PersonalChannel(_Section):
    enabled: bool = False
    personal_channel_namespace: str = ""
    single_connection: bool = False


class ClientSettings(_Section):
    token: TokenSettings = Field(default_factory=TokenSettings)
    subscription_token: SubscriptionTokenSettings = Field(default_factory=SubscriptionTokenSettings)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to open WebSockets and emulation streams; '*' allows all.",
    )
    allow_anonymous_connect_without_token: bool = False
    disallow_anonymous_connection_tokens: bool = False
    insecure: bool = Field(False, description="Development only: no auth, every permission.")
    ping_interval: Seconds = Field(25.0, gt=0)
    pong_timeout: Seconds = Field(8.0, gt=0)
    expired_close_delay: Seconds = 25.0
    expired_sub_close_delay: Seconds = 25.0
    stale_close_delay: Seconds = Field(10.0, gt=0)
    channel_limit: int = Field(128, gt=0)
    queue_max_size: int = Field(1_048_576, gt=0, description="Bytes queued per connection.")
    history_max_publication_limit: int = Field(300, gt=0)
    recovery_max_publication_limit: int = Field(300, gt=0)
    user_connection_limit: int = Field(0, ge=0, description="Per user and node; 0 = off.")
    connection_limit: int = Field(0, ge=0, description="Connections per node; 0 = off.")
    presence_update_interval: Seconds = Field(27.0, gt=0)
    command_rate_limit: RateLimit = Field(default_factory=RateLimit)
    subscribe_to_user_personal_channel: PersonalChannel = Field(default_factory=PersonalChannel)
    connect_include_server_time: bool = False

    @model_validator(mode="after")
    def _pong_before_next_ping(self) -> ClientSettings:
        if self.pong_timeout >= self.ping_interval:
            raise ValueError("pong_timeout must be shorter than ping_interval")
        return self


class WebSocketSettings(_Section):
    handler_prefix: str = "/connection/websocket"
    message_size_limit: int = Field(65_536, gt=0, description="Largest incoming frame, bytes.")
    write_timeout: Seconds = Field(
        1.0,
        gt=0,
        description="Writes paused this long without one byte sent close the client (3008).",
    )
    handshake_timeout: Seconds = Field(10.0, gt=0, description="Deadline for HTTP headers.")
    close_timeout: Seconds = Field(5.0, gt=0, description="Wait for the client's close reply.")

    @model_validator(mode="before")
    @classmethod
    def _compression_removed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "compression" in data:
            raise ValueError(
                "compression is not supported (permessage-deflate is never negotiated); "
                "remove websocket.compression from the configuration"
            )
        return data


class StreamSettings(_Section):
    """One of the emulation transports: a stream of replies, commands over ``/emulation``."""

    enabled: bool = Field(
        False, description="Serve this transport (for networks without WebSocket)."
    )
    handler_prefix: str
    max_request_body_size: int = Field(
        65_536, gt=0, description="Bytes of the request that opens the stream (its connect)."
    )


class HttpStreamSettings(StreamSettings):
    handler_prefix: str = "/connection/http_stream"


class SseSettings(StreamSettings):
    handler_prefix: str = "/connection/sse"


class EmulationSettings(_Section):
    """The endpoint that takes the commands of HTTP-streaming and SSE connections."""

    handler_prefix: str = "/emulation"
    max_request_body_size: int = Field(
        65_536, gt=0, description="Bytes of one emulation request; larger ones answer 413."
    )
    max_pending_requests: int = Field(
        32,
        gt=0,
        description="Requests of one session waiting for their turn; more answer 429.",
    )


class HttpApiSettings(_Section):
    key: str = Field("", description="X-API-Key value; empty disables the API.")
    insecure: bool = False
    handler_prefix: str = "/api"
    error_mode: Literal["", "transport"] = ""
    batch_max_size: int = Field(
        1000, gt=0, description="Commands of one batch, channels of one broadcast."
    )
    response_max_size: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Bytes of one response; commands of a batch past it answer 106.",
    )


class HttpServerSettings(_Section):
    address: str = Field("127.0.0.1", description="Listen address.")
    port: int = Field(8000, ge=0, le=65535)
    accept_backlog: int = Field(
        4096,
        ge=1,
        le=65535,
        description=(
            "Connections the kernel queues before they are accepted: sized for the burst of "
            "reconnects a draining pod sends here (the kernel caps it at net.core.somaxconn)."
        ),
    )


class RedisSettings(_Section):
    address: list[str] = Field(
        default_factory=lambda: ["redis://127.0.0.1:6379/0"],
        description="Redis URLs; several shard channels by consistent hashing.",
    )
    prefix: str = "roomcast"
    sentinel_addresses: list[str] = Field(default_factory=list)
    sentinel_master_name: str = ""
    cluster: bool = False
    connect_timeout: Seconds = 1.0
    io_timeout: Seconds = 4.0
    sharded_pubsub: bool = Field(
        True, description="With cluster: SSUBSCRIBE/SPUBLISH on the slot's node (Redis 7+)."
    )
    health_check_interval: Seconds = Field(
        1.0, gt=0, description="Seconds between PINGs on each connection (half-open detection)."
    )
    position_check_interval: Seconds = Field(
        5.0, gt=0, description="Seconds between checks of channel positions for lost tails."
    )
    reconnect_delay_min: Seconds = Field(
        0.05, gt=0, description="First reconnect delay in seconds (jittered, doubling)."
    )
    reconnect_delay_max: Seconds = Field(5.0, gt=0, description="Longest reconnect delay.")
    replicas_to_wait: int = Field(
        0,
        ge=0,
        description="Replicas that must have a publication (WAIT) before it is acknowledged.",
    )
    replica_wait_timeout: Seconds = Field(
        0.5, description="Seconds WAIT may take; fewer replicas in time fails the publish."
    )
    tls_ca_file: str = Field(
        "",
        description="PEM CA bundle that signs the Redis certificates (rediss:// URLs); "
        "empty trusts the system store. The URL option ssl_ca_certs wins.",
    )
    tls_cert_file: str = Field(
        "", description="PEM client certificate, for Redis with tls-auth-clients yes."
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file.")
    tls_skip_verify: bool = Field(
        False,
        description="Accept any Redis certificate and host name (testing only); "
        "the URL option ssl_cert_reqs=none does the same for one URL.",
    )

    @field_validator("address", "sentinel_addresses", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class MemoryEngineSettings(_Section):
    history_max_size: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="Bytes of history of all channels together; the oldest go first past it.",
    )


class EngineSettings(_Section):
    type: Literal["memory", "redis"] = "memory"
    memory: MemoryEngineSettings = Field(default_factory=MemoryEngineSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)


class ShutdownSettings(_Section):
    drain_window: Seconds = Field(30.0, description="Spread shutdown disconnects over this.")
    timeout: Seconds = Field(45.0, description="Hard stop after SIGTERM.")


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class AdminSettings(_Section):
    """The admin web UI at /admin (roomcast.admin): off unless enabled with a password."""

    enabled: bool = False
    password: str = Field(
        "",
        description="The admin UI's own password (at least 12 characters); never the client "
        "token secret or the API key. Sessions are signed with a key derived from it.",
    )
    session_ttl: Seconds = Field(8 * 3600.0, gt=0, description="How long a login lasts.")

    @model_validator(mode="after")
    def _password_when_enabled(self) -> AdminSettings:
        if self.enabled and len(self.password) < 12:
            raise ValueError("admin.enabled needs admin.password of at least 12 characters")
        return self


_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("roomcast_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping, not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


class Settings(BaseSettings):
    """Everything the server can be told."""

    model_config = SettingsConfigDict(
        env_prefix="ROOMCAST_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    http_server: HttpServerSettings = Field(default_factory=HttpServerSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    channel: ChannelSettings = Field(default_factory=ChannelSettings)
    websocket: WebSocketSettings = Field(default_factory=WebSocketSettings)
    http_stream: HttpStreamSettings = Field(default_factory=HttpStreamSettings)
    sse: SseSettings = Field(default_factory=SseSettings)
    emulation: EmulationSettings = Field(default_factory=EmulationSettings)
    http_api: HttpApiSettings = Field(default_factory=HttpApiSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    node_name: str = Field("", description="Shown in /api/info; defaults to the hostname.")

    @classmethod
    def from_sources(cls, data: dict[str, Any], environ: Mapping[str, str]) -> Settings:
        """Validate ``data`` (file plus shortcuts) under nested ``ROOMCAST_A__B`` variables."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**data)
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the file and the shortcut variables, already merged.
        return (_MappingEnvSource(settings_cls, _ENVIRON.get() or {}), init_settings)

    @model_validator(mode="after")
    def _admin_password_is_its_own(self) -> Settings:
        token = self.client.token
        others = {token.hmac_secret_key, token.hmac_previous_secret_key, self.http_api.key} - {""}
        if self.admin.enabled and self.admin.password in others:
            raise ValueError("admin.password must differ from the token secrets and the API key")
        return self

    def namespace(self, name: str) -> ChannelOptions | None:
        for ns in self.channel.namespaces:
            if ns.name == name:
                return ns
        return None


#: Documented short environment variables and the setting each one sets.
ENV_SHORTCUTS: dict[str, tuple[str, ...]] = {
    "ROOMCAST_HOST": ("http_server", "address"),
    "ROOMCAST_PORT": ("http_server", "port"),
    "ROOMCAST_TOKEN_HMAC_SECRET": ("client", "token", "hmac_secret_key"),
    "ROOMCAST_API_KEY": ("http_api", "key"),
    "ROOMCAST_ENGINE": ("engine", "type"),
    "ROOMCAST_REDIS_URL": ("engine", "redis", "address"),
    "ROOMCAST_ALLOWED_ORIGINS": ("client", "allowed_origins"),
    "ROOMCAST_LOG_LEVEL": ("log", "level"),
    "ROOMCAST_NODE_NAME": ("node_name",),
    "ROOMCAST_ADMIN_PASSWORD": ("admin", "password"),
}
_LIST_SHORTCUTS = {"ROOMCAST_ALLOWED_ORIGINS"}


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists ``(path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a YAML or JSON config file into a mapping."""
    text = Path(path).read_text()
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([(str(path), f"cannot parse: {exc}")]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([(str(path), "the top level must be a mapping")])
    return data


def _apply_shortcuts(data: dict[str, Any], environ: dict[str, str]) -> None:
    for var, path in ENV_SHORTCUTS.items():
        if var not in environ:
            continue
        value: Any = environ[var]
        if var in _LIST_SHORTCUTS:
            value = [part.strip() for part in value.split(",") if part.strip()]
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = value


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build settings from file, shortcut variables and nested variables.

    Raises ``ConfigError`` listing every bad key with its dotted path.
    """
    env = dict(os.environ if environ is None else environ)
    path = config_path if config_path is not None else env.get("ROOMCAST_CONFIG")
    data: dict[str, Any] = read_config_file(path) if path else {}
    _apply_shortcuts(data, env)
    if overrides:
        _deep_merge(data, overrides)
    for var in (*ENV_SHORTCUTS, "ROOMCAST_CONFIG"):
        env.pop(var, None)  # consumed above; not nested settings
    try:
        return Settings.from_sources(data, env)
    except ValidationError as exc:
        raise ConfigError(
            [(".".join(str(p) for p in err["loc"]) or "(root)", err["msg"]) for err in exc.errors()]
        ) from None


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value
