"""The sandboxes as the tests run them: each app's own defaults (its real
limits: ``POST /_sandbox/config/defaults``, 429 without ``Retry-After``),
with the windows compressed to the client's test pacing windows
(``DRIFTSYNC_RATE_LIMITS`` in tests/settings.py): the same number of
requests per window and the same behaviour past it, in less time. Never
switched off: a test that needs a limit off says so itself."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from connectors.sandbox.control import SandboxControl

#: sandbox setting -> the client pacing setting whose window it follows
_WINDOWS = {
    "google": {"rate_window": "window"},
    "hubspot": {"rate_window": "window", "search_rate_window": "search_window"},
    "drift": {"rate_window": "window"},
    "mailchimp": {},  # a connection limit (10 at once), no window
}


def compressed_windows(key: str) -> dict[str, float]:
    """The sandbox settings that compress ``key``'s windows for the tests."""
    scaled = settings.DRIFTSYNC_RATE_LIMITS.get(key, {})
    return {
        name: float(scaled[pacing]) for name, pacing in _WINDOWS[key].items() if pacing in scaled
    }


def realistic(control: Any, key: str = "", **extra: Any) -> dict[str, Any]:
    """Put the sandbox of ``control`` (a SandboxControl, or a sandbox root
    URL with ``key``) back to its app's defaults with the test windows."""
    if isinstance(control, str):
        control = SandboxControl(control, key=key)
    body = {**compressed_windows(key or control.key), **extra}
    return control.call("POST", "/config/defaults", body)
