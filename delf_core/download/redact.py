"""Credentials in a URL (`https://user:secret@host/`) never reach a message, log or manifest."""

from __future__ import annotations

import urllib.parse

_MASK = "***"


def redact_url(url: str) -> str:
    """`url` with its password masked: `https://user:***@host/...`.

    A user name without a password is often a token itself, so it is masked whole.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _scrub_userinfo_text(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    shown = f"{user}:{_MASK}" if has_password else _MASK
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def secrets_of(url: str) -> list[str]:
    """The pieces of `url` that must not be shown, as they may appear in other text."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        netloc = url.partition("://")[2].partition("/")[0]
    if "@" not in netloc:
        return []
    userinfo = netloc.rpartition("@")[0]
    user, has_password, password = userinfo.partition(":")
    secret = password if has_password else user
    found = {userinfo, secret, urllib.parse.unquote(secret)}
    # Longest first, so a password inside the user:password pair is not half-masked.
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every credential of `url` masked (for messages of other libraries)."""
    for secret in secrets_of(url):
        text = text.replace(secret, _MASK)
    return text


def _scrub_userinfo_text(text: str) -> str:
    head, sep, rest = text.partition("://")
    if not sep or "@" not in rest.partition("/")[0]:
        return text
    return f"{head}{sep}{_MASK}@{rest.partition('@')[2]}"
