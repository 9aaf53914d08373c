"""Creates or updates, by name, the automations of a YAML file: `make deploy` runs it."""

from __future__ import annotations

import sys

import yaml
from prefect.client.orchestration import get_client
from prefect.events.schemas.automations import AutomationCore


def apply(path: str) -> list[str]:
    """Makes the server's automations of the names in `path` say what `path` says."""
    with open(path) as handle:
        wanted = [AutomationCore.model_validate(a) for a in yaml.safe_load(handle)["automations"]]
    lines = []
    with get_client(sync_client=True) as client:
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            for extra in existing[1:]:  # one automation per name
                client.delete_automation(extra.id)
            if existing:
                client.update_automation(existing[0].id, automation)
                lines.append(f"Updated automation {automation.name!r} ({existing[0].id})")
            else:
                created = client.create_automation(automation)
                lines.append(f"Created automation {automation.name!r} ({created})")
    return lines


if __name__ == "__main__":
    print("\n".join(apply(sys.argv[1] if len(sys.argv) > 1 else "deployments/automations.yaml")))
