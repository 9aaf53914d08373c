"""One markdown summary artifact per pipeline step, for the Prefect UI (DESIGN.md rule 7).

Every artifact of a run is keyed `gldv2-<step>` (its summary) or `gldv2-<step>-progress`:
one prefix, and one key per step a user can follow across runs.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from prefect.artifacts import create_markdown_artifact

from delf_core import storage

# A failure list of a million-image job would make an artifact nobody reads.
MAX_LISTED = 20


def artifact_key(step: str, kind: str | None = None) -> str:
    """`gldv2-<step>` (or `gldv2-<step>-<kind>`), cut down to what a key may hold (a-z, 0-9, -)."""
    slug = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
    return f"gldv2-{slug}" + (f"-{kind}" if kind else "")


def format_duration(seconds: float) -> str:
    """`4.2 s`, `3 min 05 s` or `2 h 07 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def size_on_disk(url: str) -> int | None:
    """Bytes of a file, or of every file under a folder (one listing); None if unreadable."""
    fs, path = storage.resolve(url.rstrip("/"))
    try:
        return int(fs.du(path, total=True))
    except OSError:
        return None


def capped(lines: Iterable[str], total: int, limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` of `lines`, and "... and N more" when `total` is larger."""
    listed = list(itertools.islice(lines, limit))
    if total > len(listed):
        listed.append(f"... and {total - len(listed)} more")
    return listed


def _cell(value: object) -> str:
    # A float's 17 digits help nobody; a `|` or a newline would break the table.
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows: Sequence[Mapping[str, object]]) -> list[str]:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows),
    ]


def summary_markdown(
    step: str,
    facts: Mapping[str, object],
    *,
    duration: float | None = None,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, object]] | None = None,
    more: str = "",
) -> str:
    """A title, the facts as a two-column table, then `table`, `notes` as a list and `more`."""
    rows = [{"": name, "value": value} for name, value in facts.items()]
    if duration is not None:
        rows.append({"": "duration", "value": format_duration(duration)})
    parts = [f"### {step}", "\n".join(_table(rows))]
    if table:
        parts.append("\n".join(_table(table)))
    if notes:
        parts.append("\n".join("- " + note.replace("\n", " ") for note in notes))
    if more:
        parts.append(more.strip("\n"))
    return "\n\n".join(parts) + "\n"


def publish_summary(
    step: str,
    facts: Mapping[str, object],
    *,
    started: float | None = None,
    notes: Sequence[str] = (),
    table: Sequence[Mapping[str, object]] | None = None,
    more: str = "",
) -> None:
    """Publishes a step's summary as the markdown artifact `gldv2-<step>`.

    Args:
        step: The step's name (`build_image_dataset`, `export_local_model`, ...).
        facts: Name -> value, in the order to show them.
        started: `time.monotonic()` when the step began: the duration is shown.
        notes: Lines listed under the table (skipped images, hints).
        table: Rows of a second table (metrics per protocol, ...).
        more: Markdown shown last (a picture, a file's text).
    """
    duration = None if started is None else time.monotonic() - started
    create_markdown_artifact(
        summary_markdown(step, facts, duration=duration, notes=notes, table=table, more=more),
        key=artifact_key(step),
        description=f"{step}: what the step did",
    )
