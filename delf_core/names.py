"""Image names read from untrusted files, checked to stay inside the folder they are joined to."""

from __future__ import annotations

import re

# What lets a name leave the folder it is joined to, or name another place: control
# characters (NUL included), a backslash (a Windows separator), a leading "/", a colon
# (a drive letter, a URL scheme, or fsspec's "::" chaining, which re-reads the whole
# joined path), a ".." part. One search per name: a GLDv2 index has 761k.
_UNSAFE = re.compile(r"[\x00-\x1f\\:]|^/|(?:^|/)\.\.(?:/|$)")
_REASONS = (
    (re.compile(r"\x00"), "holds a NUL byte"),
    (re.compile(r"[\x01-\x1f]"), "holds a control character"),
    (re.compile(r"\\"), "holds a backslash"),
    (re.compile(r"^/"), "is an absolute path"),
    (re.compile(r":"), "holds a ':' (a drive letter or URL)"),
    (re.compile(r"(?:^|/)\.\.(?:/|$)"), "has a '..' part"),
)


def check_name(name: object, source: str) -> str:
    """Returns `name` when it is a relative path that stays inside the folder it joins.

    Names may have folders (`a/b/c/<id>` for GLDv2) but not leave them.

    Args:
        name: An image name from a dataset file (untrusted).
        source: The file the name comes from, for the error.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: one line naming `source` and the name: empty, not a string,
            absolute, with a '..' part, a backslash, a drive letter, a NUL byte.
    """
    if isinstance(name, str) and name and not _UNSAFE.search(name):
        return name
    if not isinstance(name, str):
        reason = f"is a {type(name).__name__}, not a string"
    elif not name:
        reason = "is empty"
    else:
        reason = next(text for pattern, text in _REASONS if pattern.search(name))
    raise ValueError(
        f"{source}: image name {name!r} {reason}; names must be relative paths that stay "
        "inside the images and features folders: fix the file"
    )
