"""Feature file names: the original scripts' suffixes, and names checked to stay in their folder."""

from __future__ import annotations

from delf_core import storage
from delf_core.names import check_name

# The list form of extract_features writes .delf; the DELG form writes .delg_local
# (the same DelfFeatures format) and/or .delg_global (one DatumProto).
DELF_SUFFIX = ".delf"
DELG_LOCAL_SUFFIX = ".delg_local"
DELG_GLOBAL_SUFFIX = ".delg_global"


def child_path(folder: str, name: str, suffix: str, source: str) -> str:
    """`<folder>/<name><suffix>`, once `check_name` has passed `name`.

    Raises:
        ValueError: as `check_name`.
    """
    return storage.join(folder, check_name(name, source) + suffix)
