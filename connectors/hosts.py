"""Where credentials may be sent: the one rule, used by the HTTP layer, the
token refreshers, the account model's validation and the OAuth flow.

An account's API key, access token, refresh token and the OAuth app's client
secret only ever go over HTTPS to the vendor's own hosts (each connector
lists them in ``vendor_hosts``). Pointing an account at another base URL is
for the sandboxes: it is allowed only when ``settings.DEBUG`` is on or when
``DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE`` is set (``check --deploy`` warns about
the latter), and even then never to a link-local address (a cloud's metadata
service).

A host pattern is a host name, or ``*.`` followed by one: the star stands for
exactly one DNS label of letters and digits (Mailchimp's data centers,
``us6.api.mailchimp.com``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from .base import UntrustedHost

OVERRIDE_SETTING = "DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE"
_LABEL = re.compile(r"^[a-z0-9]+$")
#: names that resolve to a cloud's instance metadata service
_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata"})


def override_allowed() -> bool:
    """May an account talk to a base URL that is not its vendor's?"""
    try:
        from django.conf import settings

        if not settings.configured:
            return False
        return bool(settings.DEBUG or getattr(settings, OVERRIDE_SETTING, False))
    except ImportError:  # a bare connector without Django: vendor hosts only
        return False


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            label, dot, rest = host.partition(".")
            if dot and rest == pattern[2:] and _LABEL.match(label):
                return True
        elif host == pattern:
            return True
    return False


def is_vendor_url(url: str, patterns: Iterable[str]) -> bool:
    """HTTPS, default port, no user info, on one of the vendor's hosts."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and not parts.username
        and not parts.password
        and host_matches(parts.hostname or "", patterns)
    )


def _link_local(host: str) -> bool:
    if host in _METADATA_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_link_local or (mapped and mapped.is_link_local))


def destination_problem(url: str, patterns: Iterable[str], app: str = "the app") -> str | None:
    """Why credentials may not be sent to ``url``, or None when they may."""
    patterns = tuple(patterns)
    if is_vendor_url(url, patterns):
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError:
        return f"{url[:100]!r} is not a valid URL."
    hosts = ", ".join(patterns) or "none"
    if not override_allowed():
        return (
            f"Credentials are only sent over HTTPS to {app}'s own hosts ({hosts}), "
            f"not to {host or 'this URL'}. A base URL override is for the sandboxes: it needs "
            f"DEBUG=true or {OVERRIDE_SETTING}=true."
        )
    if parts.scheme not in ("http", "https") or not host:
        return "A base URL override must be an http(s) URL with a host."
    if _link_local(host):
        return f"{host} is a link-local address (a cloud metadata service); never sent there."
    return None


def check_destination(url: str, patterns: Iterable[str], app: str = "the app") -> None:
    """Raise ``UntrustedHost`` unless credentials may be sent to ``url``."""
    problem = destination_problem(url, patterns, app)
    if problem:
        raise UntrustedHost(f"Refused to send credentials: {problem}")


def vendor_or_override(
    vendor_url: str, derived_url: str, base_url: str, patterns: Iterable[str]
) -> str:
    """A URL derived from an overridden base (a sandbox's token endpoint), or
    the vendor's own when the base is the vendor's or overrides are off."""
    if derived_url and override_allowed() and not is_vendor_url(base_url, patterns):
        return derived_url
    return vendor_url


__all__ = [
    "OVERRIDE_SETTING",
    "check_destination",
    "destination_problem",
    "host_matches",
    "is_vendor_url",
    "override_allowed",
    "vendor_or_override",
]
