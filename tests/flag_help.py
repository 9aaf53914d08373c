"""What `delf <command> --help` says of each flag: the default its entry ends with."""

from __future__ import annotations

import re

import pytest

from delf_cli.main import main


def assert_help_shows_defaults(capsys, command: str, defaults: list[tuple[str, str]]) -> None:
    """Each `(flag, default)`: the flag's own entry in `delf <command> --help` names the
    default (as `repr` shows it), not just some entry of the page."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    for flag, default in defaults:
        # An entry starts a line, indented two spaces; its help's lines are indented more.
        start = re.search(rf"^  {flag}(?=[ \n])", out, re.MULTILINE)
        assert start, flag
        entry = " ".join(out[start.start() :].split())
        assert entry.split("(default: ", 1)[1].startswith(default), flag
