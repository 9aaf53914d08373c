"""Where Prefect keeps task results and cache records: a block for a bucket or a folder.

Local storage ($PREFECT_HOME/storage) is Prefect's default and serves one machine. Runs on
several machines (docker or kubernetes work pools, Dask workers elsewhere) need shared
storage to find each other's cache records: save a block for a gs:// folder once, then
set PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK to its slug where flows run.
"""

from __future__ import annotations

import re

from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from delf_core import storage

SETTING = "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"


def save_result_storage(url: str, name: str, settings: dict | None = None) -> str:
    """Saves (or updates) the block `name` for `url`; returns its slug.

    Args:
        url: gs://bucket/folder (any fsspec URL), or a local folder.
        name: the block's name: lowercase letters, digits and dashes.
        settings: options for the fsspec filesystem (e.g. {"project": "p"}).

    Raises:
        ValueError: a bad name.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise ValueError(f"--name={name}: use lowercase letters, digits and dashes")
    fs, path = storage.resolve(url)
    if storage.is_local(fs):
        block = LocalFileSystem(basepath=path)
    else:
        block = RemoteFileSystem(basepath=url.rstrip("/"), settings=settings or {})
    block.save(name, overwrite=True)
    return f"{block.get_block_type_slug()}/{name}"
