"""The floors a run is measured against: the fewest requests the APIs allow
for the same work (from each connector's page and batch sizes), and the raw
time floor (the initial sync's requests, recorded on the wire and replayed by
a bare ``requests.Session`` loop)."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import pickle
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import requests

from connections.models import SyncRun
from connectors.base import Connector
from connectors.http import HttpClient

from .world import World

_TOKEN_RE = re.compile(rb'"(nextPageToken|nextSyncToken)"\s*:\s*"([^"]+)"')
_AFTER_RE = re.compile(rb'"after"\s*:\s*"([^"]+)"')


def pages(n: int, size: int) -> int:
    return max(1, math.ceil(n / size))


def writes_of(run: SyncRun, side: str) -> tuple[int, int]:
    counters = run.counters.get(side, {})
    return int(counters.get("created", 0)), int(counters.get("updated", 0))


def write_floor(connector: type[Connector], created: int, updated: int) -> int:
    """Batch writes at the connector's largest batch for these creates and updates."""
    size = connector.write_batch_size
    if connector.upsert_batches:  # one batch endpoint takes new and existing contacts
        return math.ceil((created + updated) / size)
    return math.ceil(created / size) + math.ceil(updated / size)


def read_floor(connector: type[Connector], contacts: int) -> int:
    """List pages at the connector's page size; one GET per contact where it
    cannot list (Drift: one per contact the inbox names)."""
    if not connector.capabilities.list_changes:
        return contacts
    return pages(contacts, connector.page_size)


class Recorder:
    """Keeps every request a connector sends, as sent on the wire, in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.count = 0

    def wrap(self, side: str, http: HttpClient) -> None:
        session = http.session
        original = session.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
            response = original(method, url, *args, **kwargs)
            sent = response.request
            body = sent.body
            if isinstance(body, str):
                body = body.encode()
            tokens = []
            if method == "GET" and response.content:
                tokens = [
                    (m.group(1).decode(), m.group(2).decode())
                    for m in _TOKEN_RE.finditer(response.content)
                ]
                tokens += [
                    ("after", m.group(1).decode()) for m in _AFTER_RE.finditer(response.content)
                ]
            pickle.dump(
                (
                    side,
                    sent.method,
                    sent.url,
                    body,
                    {
                        k: v
                        for k, v in sent.headers.items()
                        if k.lower() in ("authorization", "content-type", "accept")
                    },
                    tokens,
                    response.status_code,
                ),
                self.fh,
            )
            self.count += 1
            return response

        session.request = request  # type: ignore[method-assign]

    def close(self) -> None:
        self.fh.close()

    def records(self) -> Iterator[tuple[Any, ...]]:
        with open(self.path, "rb") as fh:
            while True:
                try:
                    yield pickle.load(fh)
                except EOFError:
                    return


def replay(records: list[tuple[Any, ...]], target: World, source: World) -> dict[str, Any]:
    """The raw time floor: the same requests, one after another, by a bare
    ``requests.Session``; answers are read and JSON-decoded, nothing else."""
    old_base, new_base = source.server.base_url, target.server.base_url
    # untimed: etags of the replay world's Google people (batchUpdate checks them)
    etags: dict[str, str] = {}
    for app in target.apps.values():
        if app.key == "google":
            for p in app.control.contacts():
                etags[p["resourceName"]] = p["etag"]
    prepared = []
    for side, method, url, body, headers, tokens, status in records:
        url = url.replace(old_base, new_base, 1)
        if body and etags and url.endswith("people:batchUpdateContacts"):
            data = json.loads(body)
            for rn, person_body in (data.get("contacts") or {}).items():
                if rn in etags:
                    person_body["etag"] = etags[rn]
            body = json.dumps(data).encode()
        prepared.append((side, method, url, body, headers, tokens, status))
    session = requests.Session()
    token_map: dict[str, str] = {}
    errors: Counter[str] = Counter()
    gc.collect()
    start = time.perf_counter()
    for _side, method, url, body, headers, tokens, status in prepared:
        if token_map and "?" in url:
            base, _, query = url.partition("?")
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            if any(v in token_map for _, v in pairs):
                pairs = [(k, token_map.get(v, v)) for k, v in pairs]
                url = base + "?" + urllib.parse.urlencode(pairs)
        response = session.request(method, url, data=body, headers=headers, timeout=120)
        if response.content:
            with contextlib.suppress(ValueError):
                response.json()
        if tokens:
            fresh = [
                (m.group(1).decode(), m.group(2).decode())
                for m in _TOKEN_RE.finditer(response.content)
            ]
            fresh += [("after", m.group(1).decode()) for m in _AFTER_RE.finditer(response.content)]
            for (kind, old), (kind2, new) in zip(tokens, fresh):
                if kind == kind2:
                    token_map[old] = new
        if response.status_code != status:
            errors[
                f"{method} {urllib.parse.urlsplit(url).path}: {status}->{response.status_code}"
            ] += 1
    wall = time.perf_counter() - start
    session.close()
    return {"wall_s": round(wall, 3), "requests": len(prepared), "status_mismatches": dict(errors)}
