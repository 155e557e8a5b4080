"""A persistent, content-addressed cache of class probabilities on perturbed inputs, bounded, on disk.

The perturbation engine forwards each (example, family) request in chunks of its own (see
effbench.metrics.perturbation), so the probabilities of a request are a function of the model, its
dtype, the device and thread count that computed them, and the request's rows of token ids. That is
the key: a cached result is the same bits a fresh forward pass gives, so the cache never changes a
number. What it saves is paid once per model across explainers (the leave_one_out explainer and
faithfulness ask for the same passes), processes, resumes and re-runs after a component's version bump.

One SQLite file (safe for several processes, Ray workers included) under the effbench cache, at most
`max_bytes` of probabilities: the least recently used entries go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from effbench.errors import EffbenchError

DEFAULT_MAX_BYTES = 2 << 30
# entries are written in this many puts between checks of the total size
_EVICTION_CHECK_EVERY = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS probabilities (
    key TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    columns INTEGER NOT NULL,
    data BLOB NOT NULL,
    size INTEGER NOT NULL,
    used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS by_use ON probabilities (used);
"""


def default_path() -> Path:
    """$EFFBENCH_FORWARD_CACHE, else forward-cache/probabilities.sqlite in the effbench cache folder."""
    from effbench.paths import cache_dir

    configured = os.environ.get("EFFBENCH_FORWARD_CACHE")
    if configured:
        return Path(configured).expanduser()
    return cache_dir() / "forward-cache" / "probabilities.sqlite"


def model_key(model) -> str | None:
    """What, besides the token ids, a forward pass's result depends on; None for a model of unknown weights
    (built by hand, no provenance), whose results are not cached."""
    provenance = getattr(model, "provenance", None)
    checkpoint = getattr(provenance, "checkpoint_sha256", None)
    if checkpoint is None:
        return None
    class_order = None if model.class_order is None else model.class_order.tolist()
    return json.dumps({"checkpoint_sha256": checkpoint, "class_order": class_order, "dtype": str(model.dtype),
                       "device": model.device.type, "torch": torch.__version__,
                       "threads": torch.get_num_threads()}, sort_keys=True)


def request_key(model_key_text: str, chunking: dict, rows: Sequence[np.ndarray]) -> str:
    """sha256 of a request: the model, how its rows are cut into chunks, and the rows' token ids in order."""
    digest = hashlib.sha256()
    digest.update(model_key_text.encode())
    digest.update(json.dumps(chunking, sort_keys=True).encode())
    for row in rows:
        digest.update(len(row).to_bytes(4, "little"))
        digest.update(np.ascontiguousarray(row, dtype=np.int64).tobytes())
    return digest.hexdigest()


class ForwardCache:
    """Class probabilities [rows, classes] (float64) of forward requests, keyed by `request_key`."""

    def __init__(self, path: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise EffbenchError(f"the forward cache's size must be a positive number of bytes, got {max_bytes!r}")
        self.path = Path(path) if path is not None else default_path()
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._puts_since_check = 0
        self._connection: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=WAL")
            # no fsync per entry (only at WAL checkpoints): a crash of the machine may lose the last entries,
            # never corrupt the file, and a lost entry is only recomputed
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        """A cache that cannot be read or written is dropped with a warning: the run goes on without it."""
        from effbench.errors import warn

        warn(f"the forward cache {self.path} is not usable ({error}); going on without it (set "
             "EFFBENCH_FORWARD_CACHE to a writable file, or run with --forward-cache-gib 0 to silence this)")
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
        self._connection = None

    @property
    def usable(self) -> bool:
        return self._connection is not None

    def get(self, key: str) -> np.ndarray | None:
        if self._connection is None:
            return None
        try:
            return self._get(key)
        except sqlite3.Error as error:
            self._give_up(error)
            return None

    def put(self, key: str, probabilities: np.ndarray) -> None:
        if self._connection is None:
            return
        try:
            self._put(key, probabilities)
        except sqlite3.Error as error:
            self._give_up(error)

    def _get(self, key: str) -> np.ndarray | None:
        row = self._connection.execute("SELECT rows, columns, data FROM probabilities WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        rows, columns, data = row
        if len(data) != rows * columns * 8:
            self._connection.execute("DELETE FROM probabilities WHERE key = ?", (key,))
            self.misses += 1
            return None
        self._connection.execute("UPDATE probabilities SET used = ? WHERE key = ?", (time.time(), key))
        self.hits += 1
        return np.frombuffer(data, dtype=np.float64).reshape(rows, columns).copy()

    def _put(self, key: str, probabilities: np.ndarray) -> None:
        values = np.ascontiguousarray(probabilities, dtype=np.float64)
        if values.ndim != 2:
            raise ValueError(f"expected probabilities [rows, classes], got shape {values.shape}")
        data = values.tobytes()
        self._connection.execute(
            "INSERT OR REPLACE INTO probabilities (key, rows, columns, data, size, used) VALUES (?, ?, ?, ?, ?, ?)",
            (key, values.shape[0], values.shape[1], data, len(data), time.time()))
        self._puts_since_check += 1
        if self._puts_since_check >= _EVICTION_CHECK_EVERY:
            self.evict()

    def size_bytes(self) -> int:
        return int(self._connection.execute("SELECT COALESCE(SUM(size), 0) FROM probabilities").fetchone()[0])

    def evict(self) -> None:
        """Drop the least recently used entries until the cache holds at most max_bytes."""
        self._puts_since_check = 0
        if self._connection is None:
            return
        excess = self.size_bytes() - self.max_bytes
        if excess <= 0:
            return
        dropped, victims = 0, []
        for key, size in self._connection.execute("SELECT key, size FROM probabilities ORDER BY used"):
            victims.append((key,))
            dropped += size
            if dropped >= excess:
                break
        self._connection.executemany("DELETE FROM probabilities WHERE key = ?", victims)

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self.evict()
            self._connection.close()
        except sqlite3.Error as error:
            self._give_up(error)
        self._connection = None
