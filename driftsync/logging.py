"""Logging filters: what must never reach a log.

Mailchimp signs nothing, so its webhook URL carries a secret in its path;
Django's request logger (``django.request``, every 4xx/5xx) and the
development server's access log (``django.server``) print paths.
``MaskWebhookSecrets`` hides, in a record's message and its arguments:

- every path segment after ``/webhooks/<app>/`` except short numeric ids
  (today ``/webhooks/mailchimp/<secret>/`` and the older
  ``/webhooks/mailchimp/<connection id>/<secret>/``; the rule does not
  depend on the exact route), and
- the value of ``token=``, ``secret=`` and similar query parameters.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "********"

#: ``/webhooks/<app>/`` followed by the rest of the path (up to a query,
#: a fragment, white space or a quote)
_WEBHOOK_PATH = re.compile(r"(?P<prefix>/webhooks/[A-Za-z0-9_-]+/)(?P<rest>[^?#\s\"'<>]*)")
#: ids stay readable (a connection's number); anything else may be a secret
_ID = re.compile(r"^[0-9]{1,15}$")
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z_]*token|[A-Za-z_]*secret|api_?key|code|signature)=)"
    r"(?P<value>[^&;#\s\"'<>]*)",
    re.IGNORECASE,
)


def _mask_segments(match: re.Match[str]) -> str:
    segments = match.group("rest").split("/")
    masked = [s if (not s or _ID.match(s)) else MASK for s in segments]
    return match.group("prefix") + "/".join(masked)


def mask_secrets(text: str) -> str:
    if "/webhooks/" in text:
        text = _WEBHOOK_PATH.sub(_mask_segments, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: m.group("name") + MASK, text)
    return text


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, bytes):
        return mask_secrets(value.decode("utf-8", "replace"))
    return value


class MaskWebhookSecrets(logging.Filter):
    """Masks webhook secrets in ``msg`` and ``args``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, dict):
            record.args = {key: _mask(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_mask(value) for value in record.args)
        return True
