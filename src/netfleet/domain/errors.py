"""netfleet's exceptions: one root, and one class per thing a caller acts on.

    NetfleetError
    ├── DeviceError            talking to a device failed; `.category` names how
    │   ├── ConnectError       refused, unreachable, timed out before SSH was up   "connect"
    │   ├── AuthError          the device refused the credentials                  "auth"
    │   ├── CommandTimeout     no prompt came back in time                         "timeout"
    │   ├── CommandRejected    the device answered with an error (bad line)        "rejected"
    │   └── SessionLost        the session died mid-way                            "session_lost"
    ├── ParseError             output did not fit the parser                       "parse"
    ├── RenderError            a template could not be rendered (missing variable) "render"
    ├── InvalidInput           a request field is wrong; `.field` and `.fix`
    ├── AccessDenied           no or a wrong API key (401), or a role too low (403)
    ├── NotFound
    ├── Conflict
    ├── Overloaded             a queue is full; `.retry_after` seconds
    └── BackendUnavailable     the work backend (Redis) cannot be reached right now

Device failures become failed *results* carrying the category; they never escape as a 500.
"""

from __future__ import annotations


class NetfleetError(Exception):
    """Root of every netfleet error."""

    category = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeviceError(NetfleetError):
    category = "device"

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(message)
        self.device = device


class ConnectError(DeviceError):
    category = "connect"


class AuthError(DeviceError):
    category = "auth"


class CommandTimeout(DeviceError):
    category = "timeout"


class CommandRejected(DeviceError):
    category = "rejected"

    def __init__(self, message: str, *, device: str | None = None, command: str = "",
                 output: str = "") -> None:
        super().__init__(message, device=device)
        self.command = command
        self.output = output


class SessionLost(DeviceError):
    category = "session_lost"


class ParseError(NetfleetError):
    category = "parse"


class RenderError(NetfleetError):
    category = "render"


class InvalidInput(NetfleetError):
    category = "invalid"

    def __init__(self, message: str, *, field: str, fix: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.fix = fix


class AccessDenied(NetfleetError):
    category = "access"

    def __init__(self, message: str, *, authenticated: bool = False) -> None:
        super().__init__(message)
        self.authenticated = authenticated  # True: the key is valid but its role is too low


class NotFound(NetfleetError):
    category = "not_found"


class Conflict(NetfleetError):
    category = "conflict"


class Overloaded(NetfleetError):
    category = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(NetfleetError):
    """Redis (the work backend) did not answer; callers retry with backoff."""

    category = "backend"
