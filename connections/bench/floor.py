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
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from connections.models import SyncRun
from connectors.base import Connector
from connectors.http import HttpClient, max_in_flight
from connectors.pacing import AccountPacing, limits_for

from .world import World

_TOKEN_RE = re.compile(rb'"(nextPageToken|nextSyncToken)"\s*:\s*"([^"]+)"')
_AFTER_RE = re.compile(rb'"after"\s*:\s*"([^"]+)"')
#: an asynchronous batch's id (Mailchimp ``POST /batches``): later polls and
#: the results archive name it in their path
_BATCH_RE = re.compile(rb'^\{"id"\s*:\s*"([^"]+)"')


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


def read_floor(connector: type[Connector], contacts: int, carried: int = 0) -> int:
    """List pages at the connector's page size; one GET per contact where it
    cannot list (Drift: one per contact the inbox names), except the
    ``carried`` ones, whose delivery carries the whole contact (a fresh
    ``contact_identified``: the engine takes it instead of a read)."""
    if not connector.capabilities.list_changes:
        return max(0, contacts - carried)
    return pages(contacts, connector.page_size)


class Recorder:
    """Keeps every request a connector sends, as sent on the wire, in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.count = 0
        #: requests in flight answer in several threads: one record at a time
        #: (two pickles written at once interleave, and the file cannot be read)
        self.lock = threading.Lock()

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
            elif method == "POST" and url.endswith("/batches") and response.content:
                tokens = [
                    ("batch", m.group(1).decode()) for m in _BATCH_RE.finditer(response.content)
                ]
            with self.lock:
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


def _prepare(records: list[tuple[Any, ...]], target: World, source: World) -> list[tuple[Any, ...]]:
    """The recorded requests, pointed at ``target``'s sandboxes (untimed:
    Google etags of the target world's people, which batchUpdate checks)."""
    old_base, new_base = source.server.base_url, target.server.base_url
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
    return prepared


class _Tokens:
    """Page and sync tokens of the recording, mapped to the replay's own."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}
        self.lock = threading.Lock()

    def url(self, url: str) -> str:
        if self.map and "/batch" in url:  # a batch's polls and archive: its id in the path
            with self.lock:
                for old, new in self.map.items():
                    if f"/{old}" in url:
                        url = url.replace(f"/{old}", f"/{new}")
        if self.map and "?" in url:
            base, _, query = url.partition("?")
            pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
            with self.lock:
                if any(v in self.map for _, v in pairs):
                    pairs = [(k, self.map.get(v, v)) for k, v in pairs]
                    url = base + "?" + urllib.parse.urlencode(pairs)
        return url

    def learn(self, tokens: list[tuple[str, str]], response: requests.Response) -> None:
        if not tokens:
            return
        fresh = [
            (m.group(1).decode(), m.group(2).decode()) for m in _TOKEN_RE.finditer(response.content)
        ]
        fresh += [("after", m.group(1).decode()) for m in _AFTER_RE.finditer(response.content)]
        fresh += [("batch", m.group(1).decode()) for m in _BATCH_RE.finditer(response.content)]
        with self.lock:
            for (kind, old), (kind2, new) in zip(tokens, fresh):
                if kind == kind2:
                    self.map[old] = new


def replay(records: list[tuple[Any, ...]], target: World, source: World) -> dict[str, Any]:
    """The raw time floor: the same requests, one after another, by a bare
    ``requests.Session``; answers are read and JSON-decoded, nothing else."""
    prepared = _prepare(records, target, source)
    session = requests.Session()
    tokens_map = _Tokens()
    errors: Counter[str] = Counter()
    gc.collect()
    start = time.perf_counter()
    for _side, method, url, body, headers, tokens, status in prepared:
        url = tokens_map.url(url)
        response = session.request(method, url, data=body, headers=headers, timeout=120)
        deadline = time.monotonic() + 30
        while response.status_code == 404 and "batch-results" in url and status == 200:
            # the app is still running the batch: any client waits for it too
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            response = session.request(method, url, data=body, headers=headers, timeout=120)
        if response.content:
            with contextlib.suppress(ValueError):
                response.json()
        tokens_map.learn(tokens, response)
        if response.status_code != status:
            errors[
                f"{method} {urllib.parse.urlsplit(url).path}: {status}->{response.status_code}"
            ] += 1
    wall = time.perf_counter() - start
    session.close()
    return {"wall_s": round(wall, 3), "requests": len(prepared), "status_mismatches": dict(errors)}


def _endpoint_re(endpoints: frozenset[str]) -> re.Pattern[str] | None:
    """``GET /lists/{list_id}/members`` → a regex on "METHOD url-path"."""
    if not endpoints:
        return None
    parts = []
    for endpoint in endpoints:
        method, _, path = endpoint.partition(" ")
        path_re = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path))
        parts.append(f"{method} .*{path_re}")
    return re.compile("^(?:" + "|".join(parts) + ")$")


def _floor_requests(
    prepared: list[tuple[Any, ...]], side: str, world: World, reads: int, writes: int
) -> tuple[list[tuple[Any, ...]], bool, list[tuple[Any, ...]]]:
    """The floor's requests of one side, taken from the recording: its list
    pages (in order: each page's token comes from the one before; an app that
    cannot list: its per-contact reads, independent) and its batch writes
    (independent of each other)."""
    connector = world.apps[side].connector_class
    lists = _endpoint_re(connector.list_endpoints)
    batches = _endpoint_re(connector.batch_write_endpoints)
    mine = [r for r in prepared if r[0] == side]

    def key(r: tuple[Any, ...]) -> str:
        return f"{r[1]} {urllib.parse.urlsplit(r[2]).path}"

    listing = connector.capabilities.list_changes
    if listing:
        read_reqs = [r for r in mine if lists is not None and lists.match(key(r))]
    else:
        read_reqs = [r for r in mine if r[1] == "GET"]
    write_reqs = [r for r in mine if batches is not None and batches.match(key(r))]
    if len(write_reqs) < writes:  # single writes where the app has no batch (Drift)
        write_reqs += [
            r
            for r in mine
            if r[1] in ("POST", "PUT", "PATCH")
            and not (batches is not None and batches.match(key(r)))
            and not key(r).endswith(("/search", "/batch/read", ":batchGet"))
        ]
    return read_reqs[:reads], listing, write_reqs[:writes]


def latency_floor(
    records: list[tuple[Any, ...]],
    target: World,
    source: World,
    floor_by_side: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """The latency floor: the floor's requests (taken from the recording) sent
    by a bare script under the target world's latency, at each app's allowed
    concurrency and pace (``connectors.pacing``, as the connectors pace):
    both sides at once; on each side the list pages one after another, then
    the batch writes together (up to the app's concurrency)."""
    prepared = _prepare(records, target, source)
    plan = {
        side: _floor_requests(prepared, side, target, parts["reads"], parts["writes"])
        for side, parts in floor_by_side.items()
    }
    tokens_map = _Tokens()
    sent: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    local = threading.local()

    def send(side: str, pacing: AccountPacing | None, record: tuple[Any, ...]) -> None:
        _side, method, url, body, headers, tokens, _status = record
        url = tokens_map.url(url)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        path = urllib.parse.urlsplit(url).path
        while True:
            # as the connectors pace: a write also takes the app's write slot
            # (Google: one mutate at a time per account)
            ctx = (
                pacing.request(path, method=method)
                if pacing is not None
                else contextlib.nullcontext()
            )
            with ctx:
                response = session.request(method, url, data=body, headers=headers, timeout=120)
            if response.status_code != 429:
                break
            time.sleep(0.05)  # the pace should prevent it; count and go on
            with lock:
                statuses["429"] += 1
        if response.content:
            with contextlib.suppress(ValueError):
                response.json()
        tokens_map.learn(tokens, response)
        with lock:
            sent[side] += 1
            statuses[str(response.status_code)] += 1

    def run_side(side: str) -> None:
        reads, sequential, writes = plan[side]
        limits = limits_for(target.apps[side].key)
        pacing = AccountPacing(limits, f"latency-floor-{uuid.uuid4().hex}") if limits else None
        workers = max_in_flight(limits)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            if sequential:
                for record in reads:
                    send(side, pacing, record)
            else:
                list(pool.map(lambda r: send(side, pacing, r), reads))
            list(pool.map(lambda r: send(side, pacing, r), writes))

    gc.collect()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(plan)) as sides:
        list(sides.map(run_side, plan))
    wall = time.perf_counter() - start
    return {
        "wall_s": round(wall, 3),
        "latency_ms": round(target.latency * 1000),
        "requests": sum(sent.values()),
        "requests_by_side": dict(sent),
        "statuses": dict(statuses),
    }
