"""What an app's sandbox module tells the rest of driftsync about it.

Each ``connectors/sandbox/<key>.py`` ends with ``FACTS = SandboxFacts(...)``:
the sandbox class, where its API lives, what a connection needs there, and
the few app facts the shared contract tests (tests/connectors/test_contract.py)
cannot find out through the ``Connector`` interface. Nothing else keeps
per-app tables: the sandbox registry, the contract suite, the benchmark and
the demo all read these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.base import ContactWrite

from .base import SandboxApp


@dataclass(frozen=True)
class SandboxFacts:
    #: the fake of the app's API
    app: type[SandboxApp]
    #: the path under the sandbox's prefix that plays the API base URL
    api_root: str
    #: connector settings a connection needs against a fresh sandbox
    #: (Mailchimp: its default audience)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: an id of the app's own shape that no contact has
    unknown_id: str = "999999999"
    #: the sandbox routes (stats keys) a create and an update go to, and
    #: whether the update one takes a batch
    create_route: str = ""
    update_route: str = ""
    update_batched: bool = False
    #: a write the app refuses, and a piece of the app's own message about it
    refused_write: ContactWrite | None = None
    refused_message: str = ""
