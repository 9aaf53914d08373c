"""Prefect's embedded server: a generous start-up limit, and one line when it still fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delf_cli.prefect_server import DEFAULT_STARTUP_SECONDS, STARTUP_TIMEOUT_SETTING

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
READ_LIMIT = (
    "from delf_cli.prefect_server import allow_slow_start\n"
    "allow_slow_start()\n"
    "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as limit\n"
    "print(limit.value())\n"
)


def clean_env(tmp_path, **extra) -> dict[str, str]:
    """This environment with no API URL and no start-up limit: a user's fresh shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", STARTUP_TIMEOUT_SETTING, "PREFECT_PROFILE")
    }
    return {**env, "PREFECT_HOME": str(tmp_path / "prefect_home"), **extra}


def limit_seen(env) -> int:
    done = subprocess.run(
        [sys.executable, "-c", READ_LIMIT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_the_embedded_server_gets_a_generous_limit_unless_the_user_chose_one(tmp_path):
    assert limit_seen(clean_env(tmp_path)) == DEFAULT_STARTUP_SECONDS
    assert limit_seen(clean_env(tmp_path, **{STARTUP_TIMEOUT_SETTING: "45"})) == 45

    # A limit set in the active profile (`prefect config set ...`) is kept too.
    home = tmp_path / "prefect_home"
    home.mkdir(exist_ok=True)
    (home / "profiles.toml").write_text(
        f'active = "mine"\n\n[profiles.mine]\n{STARTUP_TIMEOUT_SETTING} = 77\n'
    )
    assert limit_seen(clean_env(tmp_path)) == 77


def test_a_server_that_does_not_start_ends_in_one_line_saying_what_to_do(tmp_path):
    # A limit of 0 s: Prefect gives up on its temporary server before it can answer.
    done = subprocess.run(
        [sys.executable, "-m", "delf_cli.main", "gldv2", f"--param=output_root={tmp_path / 'out'}"],
        cwd=REPO,
        env=clean_env(tmp_path, **{STARTUP_TIMEOUT_SETTING: "0"}),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("delf gldv2: error:")]
    assert "did not start within 0 s" in line
    assert "make ui" in line and "PREFECT_API_URL=" in line
    assert not (tmp_path / "out").exists()
