"""Demo contacts for the sandboxes, seeded through their common control API.

Every app gets about twenty people drawn from one pool, so the same person
turns up in several apps (sometimes with the email in another case, as
people type it), a few carry tags and a custom field, and each app that
allows it gets one contact without an email.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .base import SandboxServer
from .control import SandboxControl, SandboxControlError

#: (first name, last name, company, title)
POOL: tuple[tuple[str, str, str, str], ...] = (
    ("Ada", "Lovelace", "Analytical Engines", "Mathematician"),
    ("Grace", "Hopper", "US Navy", "Rear Admiral"),
    ("Alan", "Turing", "Bletchley Park", "Cryptanalyst"),
    ("Katherine", "Johnson", "NASA", "Research Mathematician"),
    ("Linus", "Torvalds", "Linux Foundation", "Fellow"),
    ("Margaret", "Hamilton", "MIT Instrumentation Lab", "Director"),
    ("Dennis", "Ritchie", "Bell Labs", "Researcher"),
    ("Barbara", "Liskov", "MIT", "Professor"),
    ("Ken", "Thompson", "Bell Labs", "Researcher"),
    ("Frances", "Allen", "IBM", "Fellow"),
    ("Donald", "Knuth", "Stanford", "Professor Emeritus"),
    ("Radia", "Perlman", "Dell EMC", "Fellow"),
    ("Tim", "Berners-Lee", "W3C", "Director"),
    ("Hedy", "Lamarr", "MGM", "Inventor"),
    ("Guido", "van Rossum", "Microsoft", "Distinguished Engineer"),
    ("Shafi", "Goldwasser", "Simons Institute", "Director"),
    ("John", "McCarthy", "Stanford", "Professor"),
    ("Sophie", "Wilson", "Broadcom", "Director"),
    ("Edsger", "Dijkstra", "UT Austin", "Professor"),
    ("Anita", "Borg", "Institute for Women and Technology", "Founder"),
    ("Vint", "Cerf", "Google", "Chief Internet Evangelist"),
    ("Karen", "Sparck Jones", "Cambridge", "Professor"),
    ("Bjarne", "Stroustrup", "Morgan Stanley", "Technical Fellow"),
    ("Joan", "Clarke", "GCHQ", "Cryptanalyst"),
    ("Niklaus", "Wirth", "ETH Zurich", "Professor"),
    ("Adele", "Goldberg", "ParcPlace", "CEO"),
    ("Claude", "Shannon", "Bell Labs", "Researcher"),
    ("Mary", "Allen Wilkes", "MIT Lincoln Lab", "Programmer"),
    ("Leslie", "Lamport", "Microsoft Research", "Scientist"),
    ("Jean", "Sammet", "IBM", "Manager"),
)

#: which pool members each app holds: overlapping windows, so every person
#: is in two or three apps and some in all four
SLICES: dict[str, range] = {
    "drift": range(0, 20),
    "google": range(5, 25),
    "mailchimp": range(10, 30),
    "hubspot": range(0, 30, 3),  # plus the first ten of the rest, below
}

TAGS: dict[int, list[str]] = {
    0: ["customer", "vip"],
    1: ["customer"],
    3: ["newsletter"],
    7: ["customer", "newsletter"],
    12: ["vip"],
    15: ["newsletter"],
    21: ["customer"],
}

PLANS = ("Free", "Pro", "Enterprise")


def no_email_person(key: str) -> dict[str, Any]:
    out: dict[str, Any] = {"first_name": "Walk-in", "last_name": "Visitor", "company": "Unknown"}
    if key == "drift":
        # Drift keeps a contact without email only when it has an external id
        out["custom"] = {"externalId": "demo-visitor-1"}
    return out


def email_of(index: int, first: str, last: str, key: str) -> str:
    local = f"{first}.{last}".replace(" ", "").replace("-", "")
    if key == "google" and index % 4 == 0:
        return f"{local}@Example.com"  # typed with capitals: matching folds case
    return f"{local}@example.com".lower()


def person(index: int, key: str) -> dict[str, Any]:
    first, last, company, title = POOL[index]
    out: dict[str, Any] = {
        "email": email_of(index, first, last, key),
        "first_name": first,
        "last_name": last,
        "company": company,
        "title": title,
        "phone": f"+1 555 01{index:02d}",
    }
    if index in TAGS:
        out["tags"] = TAGS[index]
    if index % 5 == 0:
        out["custom"] = {"plan": PLANS[index % 3]}
    return out


def demo_people(key: str) -> list[dict[str, Any]]:
    indexes = list(SLICES.get(key, range(20)))
    if key == "hubspot":
        indexes += [i for i in range(30) if i not in indexes][: 20 - len(indexes)]
    return [person(i, key) for i in sorted(indexes)]


def seed_demo(server: SandboxServer, *, timeout: float = 30.0) -> dict[str, list[str]]:
    """Seed every sandbox the server runs; returns the new contact ids by app."""
    seeded: dict[str, list[str]] = {}
    for prefix in server.apps:
        key = prefix.strip("/")
        control = SandboxControl.of(server, key, timeout=timeout)
        ids = control.bulk(demo_people(key))
        with contextlib.suppress(SandboxControlError):  # Mailchimp: no member without an email
            ids.append(control.create(**no_email_person(key)))
        seeded[key] = ids
    return seeded
