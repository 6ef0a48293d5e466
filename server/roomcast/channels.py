"""Channel names: validation, namespace lookup, private and user-limited channels."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .codes import ErrorCode, ProtocolError
from .config import ChannelOptions, ChannelSettings, DataFormat


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the server needs to know about one channel name."""

    name: str
    namespace: str
    options: ChannelOptions
    private: bool
    allowed_users: frozenset[str] | None  # set for user-limited channels (`dialog#42,43`)
    #: the namespace's publication_data_format, or the channel-wide one
    data_format: DataFormat = "json"


class ChannelRules:
    """Resolves channel names to their namespace options; results are cached."""

    _CACHE_LIMIT = 65_536

    def __init__(self, settings: ChannelSettings) -> None:
        self._settings = settings
        self._namespaces: dict[str, ChannelOptions] = {ns.name: ns for ns in settings.namespaces}
        self._regexes = {
            name: re.compile(opts.channel_regex)
            for name, opts in [("", settings.without_namespace), *self._namespaces.items()]
            if opts.channel_regex
        }
        self._cache: dict[str, ChannelInfo] = {}

    def resolve(self, channel: str) -> ChannelInfo:
        """Return the channel's info or raise 107 (bad name) / 102 (unknown namespace)."""
        info = self._cache.get(channel)
        if info is None:
            info = self._resolve(channel)
            if len(self._cache) >= self._CACHE_LIMIT:
                self._cache.clear()
            self._cache[channel] = info
        return info

    def _resolve(self, channel: str) -> ChannelInfo:
        s = self._settings
        if not channel or len(channel) > s.max_length:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bad channel name")
        private = channel.startswith(s.private_prefix)
        bare = channel[len(s.private_prefix) :] if private else channel
        namespace, sep, rest = bare.partition(s.namespace_boundary)
        if sep:
            options = self._namespaces.get(namespace)
            if options is None:
                raise ProtocolError(ErrorCode.UNKNOWN_CHANNEL)
        else:
            namespace, rest, options = "", bare, s.without_namespace
        regex = self._regexes.get(namespace)
        if regex is not None:
            if not regex.fullmatch(rest):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "bad channel name")
        elif not channel.isascii() or any(c in channel for c in "/*&\n\r\t "):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bad channel name")
        allowed_users: frozenset[str] | None = None
        if options.allow_user_limited_channels and s.user_boundary in rest:
            users = rest.rsplit(s.user_boundary, 1)[1]
            allowed_users = frozenset(u for u in users.split(s.user_separator) if u)
        data_format = options.publication_data_format or s.publication_data_format
        return ChannelInfo(channel, namespace, options, private, allowed_users, data_format)

    def personal_channel(self, user: str, namespace: str) -> str:
        """The channel a user is subscribed to when personal channels are on."""
        prefix = f"{namespace}{self._settings.namespace_boundary}" if namespace else ""
        return f"{prefix}{self._settings.user_boundary}{user}"
