"""`delf <step> --help` parses flags without loading TensorFlow, Apache Beam, Prefect or pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from delf_cli.main import SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "apache_beam", "prefect", "pandas")

_PROBE = """
import json, sys
from delf_cli.main import parse_args
try:
    parse_args([sys.argv[1], "--help"])
    code = None
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


def _help_in_a_fresh_process(name: str) -> tuple[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, name, *HEAVY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    *help_lines, result = done.stdout.splitlines()
    return "\n".join(help_lines), json.loads(result)


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_help_loads_no_tensorflow_beam_or_prefect(name):
    help_text, result = _help_in_a_fresh_process(name)
    assert result["code"] == 0, help_text
    assert help_text.startswith(f"usage: delf {name}"), help_text
    assert result["loaded"] == [], f"delf {name} --help imported {result['loaded']}"
