"""Cached SHA-256 of (large) files for the session record.

The digest cache is keyed by (path, size, mtime), so a multi-gigabyte model file is hashed
once, not on every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from persona_tui import paths
from persona_tui._util.atomic import atomic_write_text
from persona_tui._util.textdata import DataFileError, loads_json
from persona_tui.errors import ModelLoadError

_HASH_BLOCK = 1 << 20
_HASH_CACHE_VERSION = 1


def sha256_file(path: Path) -> str:
    """The file's SHA-256 hex digest, cached by (absolute path, size, mtime_ns).

    The cache lives in `paths.cache_dir()/hashes.json`; a corrupt or unreadable cache
    is ignored and rewritten, and a failure to write it never fails the hash.
    """
    absolute = path.resolve()
    try:
        stat = absolute.stat()
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file {path}: {exc.strerror or exc}") from exc
    key = str(absolute)
    cache_file = paths.cache_dir() / "hashes.json"
    entries = _read_hash_cache(cache_file)
    entry = entries.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return str(entry["sha256"])
    digest = _hash_stream(absolute)
    entries = _read_hash_cache(cache_file)  # another process may have added entries meanwhile
    entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    _write_hash_cache(cache_file, entries)
    return digest


def _hash_stream(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model file {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _read_hash_cache(cache_file: Path) -> dict[str, object]:
    try:
        data = loads_json(cache_file.read_bytes(), cache_file)
    except (OSError, DataFileError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _HASH_CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return dict(entries) if isinstance(entries, dict) else {}


def _write_hash_cache(cache_file: Path, entries: Mapping[str, object]) -> None:
    payload = json.dumps({"version": _HASH_CACHE_VERSION, "entries": entries}, indent=1)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_file, payload)
    except OSError:
        pass  # the cache is an optimisation: a read-only cache dir only costs a re-hash
