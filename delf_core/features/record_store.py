"""The per-image records of a features folder, sharded so that no file grows with the dataset.

A record says which model and config made an image's feature files. GLDv2's index has
761k images: one JSON of them all would be about 150 MB, rewritten whole on every run.
Instead the records live in `<output_dir>/extract_features_records/`: shard files
`<generation>/records-NNNNN.json`, an image going to the shard a stable hash of its name
picks, and `index.json` (written last) naming the generation, the shard count and each
shard's sha256. A shard is rewritten whole (temporary name, then rename) by the one
writer of that shard, so a Beam job's workers each write their own shards. When a
shard passes `max_shard_bytes`, the single writer of the index doubles the shard count
into a new generation and then points the index at it.

A folder written before shards existed keeps its records in the manifest's "images";
they are read as they are and moved into shards by the next write. A damaged shard
reads as empty (its images count as not recorded, so their files are made again), with
one warning line naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping

from delf_core import manifests, storage

log = logging.getLogger(__name__)
RECORDS_DIR = "extract_features_records"
INDEX_NAME = "index.json"
FORMAT_VERSION = 2
MIN_SHARDS = 16
# Far under the 20 MB a manifest file may take; GLDv2's index fills 64 shards of ~2 MB.
DEFAULT_MAX_SHARD_BYTES = 4 << 20
# The key of the records in a manifest written before shards existed.
LEGACY_KEY = "images"


def shard_of(name: str, num_shards: int) -> int:
    """The shard of an image name: the same in every process and Python version."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def _encode(entries: Mapping[str, dict]) -> bytes:
    return json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()


class RecordStore:
    """The sharded records of one features folder.

    Args:
        output_dir: The features folder (local path or URL).
        manifest_name: The folder's manifest, which may hold records of an older version.
        max_shard_bytes: A shard above this size makes the next commit double the shards.
    """

    def __init__(
        self, output_dir: str, manifest_name: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    ) -> None:
        self.output_dir = output_dir
        self.manifest_url = storage.join(output_dir, manifest_name)
        self.root = storage.join(output_dir, RECORDS_DIR)
        self.max_shard_bytes = max_shard_bytes

    # --- Reading ---------------------------------------------------------------

    def index(self) -> dict | None:
        """The index (generation, shard count, shard digests), or None before the first write."""
        index = manifests.read_json(storage.join(self.root, INDEX_NAME))
        if not isinstance(index, dict) or index.get("version") != FORMAT_VERSION:
            return None
        return index

    def _legacy(self) -> dict[str, dict]:
        manifest = manifests.read_json(self.manifest_url)
        records = manifest.get(LEGACY_KEY) if isinstance(manifest, dict) else None
        return records if isinstance(records, dict) else {}

    def _shard_url(self, generation: str, shard: int) -> str:
        return storage.join(self.root, generation, f"records-{shard:05d}.json")

    def read_shard(self, generation: str, shard: int) -> dict[str, dict]:
        """One shard's records; {} when it is missing, or damaged (with a warning)."""
        url = self._shard_url(generation, shard)
        fs, path = storage.resolve(url)
        try:
            with fs.open(path, "rb") as handle:
                records = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            log.warning("%s is damaged (%s): its images count as not recorded", url, error)
            return {}
        if not isinstance(records, dict):
            log.warning("%s is damaged (not a JSON object): its images count as not recorded", url)
            return {}
        return records

    def shards(self, names: Iterable[str] | None = None) -> Iterator[dict[str, dict]]:
        """The records, one shard at a time (only the shards of `names` when given).

        Memory holds one shard, not the whole folder's records.
        """
        index = self.index()
        if index is None:
            legacy = self._legacy()
            if legacy:
                yield legacy
            return
        wanted = range(index["shards"])
        if names is not None:
            wanted = sorted({shard_of(n, index["shards"]) for n in names})
        for shard in wanted:
            yield self.read_shard(index["generation"], shard)

    def read(self, names: Iterable[str] | None = None) -> dict[str, dict]:
        """The records of `names` (all when None) that exist, as one dict."""
        names = None if names is None else set(names)
        found: dict[str, dict] = {}
        for records in self.shards(names):
            if names is None:
                found.update(records)
            else:
                found.update((n, e) for n, e in records.items() if n in names)
        return found

    def digest(self) -> str:
        """sha256 of every record, from the index alone: changes when any record does."""
        index = self.index()
        if index is None:
            return manifests.fingerprint({LEGACY_KEY: self._legacy()})
        return manifests.fingerprint(index["digests"])

    # --- Writing ---------------------------------------------------------------

    def prepare(self, expected_bytes: int = 0) -> dict:
        """The index, made first when missing (moving an older manifest's records in).

        Run by the single writer of the index before shards are written.

        Args:
            expected_bytes: About how many bytes of records are coming: a new index gets
                enough shards for them (half full), so they need no resharding.
        """
        index = self.index()
        if index is not None:
            return index
        legacy = self._legacy()
        shards = MIN_SHARDS
        while (len(_encode(legacy)) + expected_bytes) / shards > self.max_shard_bytes / 2:
            shards *= 2
        index = {"version": FORMAT_VERSION, "generation": uuid.uuid4().hex[:12],
                 "shards": shards, "digests": {}}  # fmt: skip
        grouped = _group(legacy.items(), shards)
        for shard, entries in grouped.items():
            index["digests"][str(shard)] = self.write_shard(index, shard, entries)
        self._write_index(index)
        self._drop_legacy()
        return index

    def write_shard(self, index: dict, shard: int, entries: Mapping[str, dict]) -> str:
        """Writes one shard whole; returns its sha256. Only one writer per shard at a time."""
        data = _encode(entries)
        fs, path = storage.resolve(self._shard_url(index["generation"], shard))
        storage.write_bytes(fs, path, data)
        return hashlib.sha256(data).hexdigest()

    def merge_shard(self, index: dict, shard: int, changes: Mapping[str, dict | None]) -> str:
        """Applies `changes` (None removes a record) to one shard; returns its new sha256."""
        records = self.read_shard(index["generation"], shard)
        for name, entry in changes.items():
            if entry is None:
                records.pop(name, None)
            else:
                records[name] = entry
        return self.write_shard(index, shard, records)

    def commit(self, index: dict, digests: Mapping[int, str]) -> None:
        """Writes the index with the new shard digests, doubling the shards if one is too big.

        Run by the single writer of the index once every shard of `digests` is written.
        """
        changed = {str(shard): digest for shard, digest in digests.items()}
        index = {**index, "digests": {**index["digests"], **changed}}
        if any(self._size(index, int(k)) > self.max_shard_bytes for k in digests):
            index = self._reshard(index)
        self._write_index(index)

    def update(self, changes: Mapping[str, dict | None]) -> None:
        """Records (or, for None, forgets) each image of `changes`: the shards they fall in."""
        index = self.prepare(_estimated_bytes(changes))
        digests = {
            shard: self.merge_shard(index, shard, part)
            for shard, part in sorted(_group(changes.items(), index["shards"]).items())
        }
        self.commit(index, digests)

    def _size(self, index: dict, shard: int) -> int:
        fs, path = storage.resolve(self._shard_url(index["generation"], shard))
        try:
            return int(fs.size(path) or 0)
        except FileNotFoundError:
            return 0

    def _reshard(self, old: dict) -> dict:
        """The same records in twice as many shards (or more), in a new generation."""
        shards = old["shards"]
        while True:
            shards *= 2
            new = {"version": FORMAT_VERSION, "generation": uuid.uuid4().hex[:12],
                   "shards": shards, "digests": {}}  # fmt: skip
            grouped: dict[int, dict[str, dict]] = defaultdict(dict)
            for records in self.shards():
                for name, entry in records.items():
                    grouped[shard_of(name, shards)][name] = entry
            sizes = [len(_encode(e)) for e in grouped.values()]
            # One record larger than the bound cannot be split further: stop there.
            fits = max(sizes, default=0) <= self.max_shard_bytes
            if fits or max(map(len, grouped.values())) <= 1:
                break
        for shard, entries in grouped.items():
            new["digests"][str(shard)] = self.write_shard(new, shard, entries)
        self._write_index(new)
        self._remove_generation(old["generation"])
        return new

    def _write_index(self, index: dict) -> None:
        manifests.write_json(storage.join(self.root, INDEX_NAME), index)

    def _remove_generation(self, generation: str) -> None:
        fs, path = storage.resolve(storage.join(self.root, generation))
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path, recursive=True)

    def _drop_legacy(self) -> None:
        """Rewrites an older manifest without its records, now in shards."""
        manifest = manifests.read_json(self.manifest_url)
        if isinstance(manifest, dict) and LEGACY_KEY in manifest:
            manifest.pop(LEGACY_KEY)
            manifests.write_json(self.manifest_url, manifest)


def _estimated_bytes(changes: Mapping[str, dict | None]) -> int:
    """The JSON size of `changes`, from a sample of them (encoding all would cost seconds)."""
    sample = {name: changes[name] for name in itertools.islice(changes, 200)}
    return len(_encode(sample)) * len(changes) // max(len(sample), 1)


def _group(entries: Iterable[tuple[str, object]], num_shards: int) -> dict[int, dict]:
    grouped: dict[int, dict] = defaultdict(dict)
    for name, entry in entries:
        grouped[shard_of(name, num_shards)][name] = entry
    return dict(grouped)
