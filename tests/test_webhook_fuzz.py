"""Fuzz: random bodies, headers, content types, encodings and methods posted
to every webhook URL through Django's test client, with and without valid
tokens. Whatever arrives, the answer is never a 5xx (issue 11, finding 2).

Derandomized and bounded so ``make test`` stays deterministic; marked
integration so it runs on PostgreSQL too (NUL and lone surrogates are where
the databases differ)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections.models import Account, Connection, WebhookEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TOKEN = "vtok-123"
EXAMPLES = 120

# JSON values of every shape, with the characters databases dislike
texts = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()) | st.sampled_from("\x00\ud800\x7f"),
    max_size=30,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
drift_types = st.sampled_from(
    ["contact_identified", "contact_updated", "user_unsubscribed", "new_message"]
)


@st.composite
def drift_bodies(draw: Any) -> bytes:
    contact = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": json_values,
                "endUserId": json_values,
                "email": json_values,
                "attributes": json_values
                | st.dictionaries(st.sampled_from(["email", "name", "tags"]), json_values),
                "diff": json_values
                | st.lists(
                    st.fixed_dictionaries(
                        {"name": st.sampled_from(["attributes.email", "x"]), "updated": json_values}
                    ),
                    max_size=3,
                ),
                "timestamp": json_values,
                "orgId": json_values,
            },
        )
    )
    if draw(st.booleans()):
        # an authentic envelope (right token, known org): the parser's turn
        payload = {
            "type": draw(drift_types | texts),
            "token": TOKEN,
            "orgId": draw(st.sampled_from([1234, "1234"]) | json_values),
            "data": contact,
        }
        if draw(st.booleans()):
            payload["createdAt"] = draw(json_values)
    else:
        payload = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": drift_types | json_values,
                    "token": st.just(TOKEN) | json_values,
                    "orgId": st.just(1234) | json_values,
                    "createdAt": json_values,
                    "data": st.just(contact) | json_values,
                },
            )
        )
    text = json.dumps(payload, allow_nan=False)
    if draw(st.integers(0, 9)) == 0:
        # nested deeper than any decoder goes, within the size cap
        depth = draw(st.integers(1_000, 30_000))
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    return draw(encodings(text))


@st.composite
def mailchimp_bodies(draw: Any) -> bytes:
    keys = st.sampled_from(
        [
            "type",
            "fired_at",
            "data[email]",
            "data[new_email]",
            "data[old_email]",
            "data[list_id]",
            "data[action]",
            "data[merges][EMAIL]",
            "data[merges][FNAME]",
            "data[merges][GROUPINGS][0][name]",
        ]
    )
    values = (
        st.sampled_from(["subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign"])
        | st.sampled_from(["a1b2c3d4e5", "ann@example.com", "2009-03-26 21:35:57", "delete"])
        | texts
    )
    fields = draw(st.lists(st.tuples(keys | texts, values), max_size=8))
    if draw(st.booleans()):
        # a plausible member event: its email and time are the parser's turn
        emails = st.text(alphabet=st.sampled_from("ab@.\x00\ud800\n "), min_size=1, max_size=12)
        fields = [
            ("type", draw(st.sampled_from(["subscribe", "unsubscribe", "profile", "upemail"]))),
            ("data[list_id]", "a1b2c3d4e5"),
            ("data[email]", draw(emails | values)),
            ("data[new_email]", draw(emails | values)),
            ("fired_at", draw(st.just("2009-03-26 21:35:57") | values)),
        ]
        return urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in fields]).encode()
    text = urlencode(
        [
            (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
            for k, v in fields
        ]
    )
    return draw(encodings(text))


def encodings(text: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(["utf-8", "utf-16", "latin-1", "utf-8-sig", "cp1252"]).map(
        lambda codec: text.encode(codec, "surrogatepass" if codec == "utf-8" else "replace")
    )


content_types = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=xyz",
        "",
    ]
).flatmap(
    lambda base: st.sampled_from(
        ["", "; charset=utf-8", "; charset=utf-16", "; charset=bogus"]
    ).map(lambda charset: base + charset)
) | st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t)

header_values = st.just(TOKEN) | st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40
)


@pytest.fixture
def world(
    settings: Any,
    make_account: Callable[..., Account],
    make_connection: Callable[..., Connection],
) -> dict[str, str]:
    settings.DRIFT_VERIFICATION_TOKEN = TOKEN
    drift = make_account("drift", remote_id="1234")
    mailchimp = make_account("mailchimp", base_url="http://127.0.0.1:9/mailchimp/3.0")
    conn = make_connection(drift, mailchimp, settings_b={"audience": "a1b2c3d4e5"})
    Connection.objects.filter(pk=conn.pk).update(state=Connection.State.ACTIVE)
    return {
        "drift": "/webhooks/drift/",
        "mailchimp": f"/webhooks/mailchimp/{conn.webhook_secret}/",
        "mailchimp-old": f"/webhooks/mailchimp/{conn.pk}/{conn.webhook_secret}/",
        "mailchimp-wrong": "/webhooks/mailchimp/WrongGuess-0123456789abcdef/",
        "mailchimp-odd": "/webhooks/mailchimp/%00%ff..%2F/",
    }


def post(
    url: str,
    body: bytes,
    *,
    method: str = "POST",
    content_type: str,
    token_header: str | None,
    remote_addr: str = "203.0.113.5",
    **extra: str,
) -> Any:
    WebhookEvent.objects.all().delete()  # each example starts below the rate limit
    headers = dict(extra, REMOTE_ADDR=remote_addr)
    if token_header is not None:
        headers["HTTP_X_VERIFICATION_TOKEN"] = token_header
    # ``generic`` sends the bytes as they are, whatever the content type says
    response = Client(raise_request_exception=False).generic(
        method, url, body, content_type=content_type, **headers
    )
    assert response.status_code < 500, response.content[:300]
    # whatever was stored can be read back, with no NUL in it
    for event in WebhookEvent.objects.all():
        assert "\x00" not in event.body + event.event_type + event.contact_id + event.email
    return response


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    body=drift_bodies(),
    authentic_header=st.booleans(),
    content_type=st.just("application/json") | content_types,
)
def test_no_drift_delivery_gets_a_5xx(
    world: dict[str, str], body: bytes, authentic_header: bool, content_type: str
) -> None:
    header = TOKEN if authentic_header else "nope"
    post(world["drift"], body, content_type=content_type, token_header=header)


@FUZZ
@given(
    endpoint=st.sampled_from(["mailchimp"] * 4 + ["mailchimp-old", "mailchimp-wrong"]),
    body=mailchimp_bodies(),
    content_type=st.just("application/x-www-form-urlencoded") | content_types,
)
def test_no_mailchimp_delivery_gets_a_5xx(
    world: dict[str, str], endpoint: str, body: bytes, content_type: str
) -> None:
    post(world[endpoint], body, content_type=content_type, token_header=None)


@FUZZ
@given(
    endpoint=st.sampled_from(
        ["drift", "mailchimp", "mailchimp-old", "mailchimp-wrong", "mailchimp-odd"]
    ),
    method=st.sampled_from(["POST"] * 4 + ["GET", "PUT", "HEAD", "DELETE"]),
    body=drift_bodies() | mailchimp_bodies() | st.binary(max_size=300),
    content_type=content_types,
    token_header=st.none() | header_values,
    extra_headers=st.dictionaries(
        st.sampled_from(["HTTP_X_FORWARDED_FOR", "HTTP_CONTENT_ENCODING", "HTTP_X_HUB"]),
        header_values,
        max_size=2,
    ),
    remote_addr=st.sampled_from(["203.0.113.5", "2001:db8::1", "", "not-an-ip"]),
)
def test_no_request_of_any_shape_gets_a_5xx(
    world: dict[str, str],
    endpoint: str,
    method: str,
    body: bytes,
    content_type: str,
    token_header: str | None,
    extra_headers: dict[str, str],
    remote_addr: str,
) -> None:
    post(
        world[endpoint],
        body if method in ("POST", "PUT") else b"",
        method=method,
        content_type=content_type,
        token_header=token_header,
        remote_addr=remote_addr,
        **extra_headers,
    )
