"""Parquet and JSON datasets whose saves are atomic: a file is either complete under its name or not there.

Kedro's ``ParquetDataset`` and ``JSONDataset`` write straight to the final path. A run that dies half-way
through a save (SIGKILL, the OOM killer, a full disk, a signal turned into an exception) leaves a truncated
file there, and with ``versioned: true`` that file sits in the newest version folder, which the next run loads
as the latest version. These variants write to a hidden temporary file beside the final one and rename it
into place once it is complete and flushed to disk. Kedro finds versions by globbing
``<filepath>/*/<filename>``; the temporary file has another name, so a save that never finished is never a
version. A save that fails with an exception removes its temporary file (and the version folder it made); one
killed outright leaves a hidden ``.<filename>.partial-<id>`` file that nothing reads.

Only local paths (fsspec's ``file`` protocol) need this: object stores (s3, gcs, abfs) publish an object
only once its upload completes, and renaming there is a copy, so those saves go straight to the final path.

Catalog example::

    train_pairs:
      type: rewardlab.datasets.AtomicParquetDataset
      filepath: data/03_primary/train_pairs.parquet
      versioned: true

Every argument of the parent dataset (``load_args``, ``save_args``, ``fs_args``, ``credentials``, ...) works
as before.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import uuid
from pathlib import PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

_PARTIAL_MARKER = ".partial-"


def partial_name(final_name: str) -> str:
    """A hidden name in the same folder, unique per save, that Kedro's version lookup never matches."""
    return f".{final_name}{_PARTIAL_MARKER}{uuid.uuid4().hex[:12]}"


def is_partial_file(name: str) -> bool:
    """Whether `name` is the temporary file of a save that has not completed (or never will)."""
    return name.startswith(".") and _PARTIAL_MARKER in name


class AtomicSaveMixin:
    """Makes a fsspec-based Kedro dataset's ``save`` atomic on local paths.

    The parent's ``save`` runs unchanged, with ``_get_save_path`` pointing at the temporary file for its
    duration; the mixin then moves that file onto the path Kedro chose (and checked to be free). Keeping the
    parent's ``save`` means its checks, ``save_args`` and ``fs_args`` stay exactly as documented.
    """

    _protocol: str
    # Where the parent's `save` writes while a save is under way; no `__init__` of its own, so that Kedro
    # records the parent's arguments for the catalog (`_init_args`) as they are.
    _partial_path: PurePosixPath | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        inherits_init = "__init__" not in cls.__dict__
        super().__init_subclass__(**kwargs)
        if inherits_init:
            # Kedro wraps each subclass's `__init__` to record its arguments by name (for `to_config`). Wrapped
            # again here, the parent's wrapper would be recorded as `args` and `kwargs`: the parent's own
            # wrapper records the real names.
            del cls.__init__

    def _get_save_path(self) -> PurePosixPath:
        if self._partial_path is not None:
            return self._partial_path
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        # The parent's `save` is already wrapped by Kedro (version bookkeeping, error messages), and this
        # class's `save` gets the same wrapper: calling the wrapped parent would pick a second save version.
        parent_save = _unwrapped(super().save)  # type: ignore[misc]
        if self._protocol != "file":
            parent_save(self, data)
            return
        final = self._get_save_path()  # Kedro refuses a versioned path that already exists
        partial = final.parent / partial_name(final.name)
        made_version_folder = getattr(self, "_version", None) is not None and not os.path.isdir(final.parent)
        self._partial_path = partial
        try:
            parent_save(self, data)
            _fsync(str(partial))
            os.replace(partial, final)
        except BaseException:
            # BaseException: a KeyboardInterrupt or a signal raised as an exception half-way through the write
            # must not leave the temporary file behind either.
            with contextlib.suppress(OSError):
                os.remove(partial)
            if made_version_folder:
                with contextlib.suppress(OSError):
                    os.rmdir(final.parent)  # only if empty: never a version another save completed
            raise
        finally:
            self._partial_path = None
        _fsync_directory(str(final.parent))
        self._invalidate_cache()  # type: ignore[attr-defined]


class AtomicParquetDataset(AtomicSaveMixin, ParquetDataset):
    """``pandas.ParquetDataset`` whose saves are atomic on local paths (see the module's docstring)."""


class AtomicJSONDataset(AtomicSaveMixin, JSONDataset):
    """``json.JSONDataset`` whose saves are atomic on local paths (see the module's docstring)."""


def _unwrapped(save: Any) -> Any:
    """The dataset's own save function under Kedro's wrapper(s), which `functools.wraps` chains."""
    return inspect.unwrap(getattr(save, "__func__", save))


def _fsync(path: str) -> None:
    """Flush the file's data to disk, so the rename never publishes a file whose bytes are still in the cache."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: str) -> None:
    """Flush the rename itself (the folder's entry); not every filesystem allows it, and it is only durability."""
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
