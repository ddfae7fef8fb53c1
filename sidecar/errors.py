"""Every error the sidecar raises on purpose.

    SidecarError                  base: a message meant for a person, with what to do
    ├── ConfigError               the config file or an env override is wrong (names the key)
    ├── HookLoadError             a hook file/module cannot be used (names file, line, reason)
    ├── SourceError               the source (Kafka, file, engine) cannot be used
    │   ├── UnsupportedFormatError  messages in a format the sidecar does not read
    │   └── DeadLetterError         a dead letter could not be stored (file or Kafka producer)
    ├── DependencyError           a database or broker is unreachable (used by `check`)
    └── ConnectorError            Kafka Connect REST refused or failed a connector

Decoding never raises out of `decode`: it returns a `DecodeFailure` value instead.
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base class: `str(err)` is the whole message shown to the user."""


class ConfigError(SidecarError):
    """The configuration is invalid."""


class HookLoadError(SidecarError):
    """A hook could not be loaded."""


class SourceError(SidecarError):
    """The event source failed."""


class UnsupportedFormatError(SourceError):
    """Messages are in a format the sidecar does not read."""


class DeadLetterError(SourceError):
    """A dead letter could not be stored: the record stays unfinished, nothing is committed past it."""


class DependencyError(SidecarError):
    """A database or the broker is unreachable."""


class ConnectorError(SidecarError):
    """Kafka Connect could not apply or report a connector."""


class ExitNow(SystemExit):
    """Raised by the second SIGTERM/SIGINT's handler: never taken for a hook's failure, even
    when the signal arrives during a call made on the loop's thread. (Here, not in the compiled
    `sidecar.execute`, which re-exports it: a compiled class cannot subclass SystemExit.)"""
