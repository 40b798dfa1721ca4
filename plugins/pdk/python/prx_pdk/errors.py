"""Errors the SDK raises, and how a Python exception becomes a host error."""

import traceback

try:  # inside a component: how a WIT `result` error is returned or raised
    from componentize_py_types import Err
except ImportError:  # plain CPython (the SDK's and plugins' own tests)

    class Err(Exception):
        def __init__(self, value):
            super().__init__(value)
            self.value = value


class HostError(RuntimeError):
    """The host refused or failed a call (a permission, a quota, a
    disallowed URL, a full store). The message is the host's. A
    RuntimeError, as PRX's SDK raises."""


class HostUnavailable(HostError):
    """A host interface this plugin was not built with."""

    def __init__(self, interface, permission):
        if permission:
            hint = (
                f"declare the `{permission}` permission in plugin.toml "
                "([permissions].required or optional) and build again; "
                "if it is declared, this plugin's world does not offer it"
            )
        else:
            hint = "this plugin's world does not offer it"
        super().__init__(f"prx:host/{interface} is not available to this plugin: {hint}")
        self.interface = interface
        self.permission = permission


class Blocked(Exception):
    """A middleware's `MiddlewareAction.block(reason)`: the chain stops
    and the caller sees the reason alone, with nothing logged."""


TRACE_FRAMES = 20


def describe(exc):
    """`Type: message`, as the caller sees a failed call."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def report(exc, where):
    """Logs the traceback of `exc` (raised in `where`) into the plugin's
    log and returns the error text for the caller."""
    from . import _backend

    message = describe(exc)
    try:
        # The innermost frames: a deep recursion's whole trace would cost
        # more fuel than the call itself.
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-TRACE_FRAMES))
        _backend.current().log("error", f"{where} raised {message}\n{trace.rstrip()}")
    except Exception:  # the log is best effort; the caller still gets the error
        pass
    return message
