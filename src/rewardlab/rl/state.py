"""Resumable state of a policy-optimization run, written atomically.

A run's checkpoints live in `<state_dir>/run-<fingerprint>/`: the fingerprint covers every setting that changes
what the run produces, the policy, the prompts and the proxy, so a run resumes only from its own checkpoints and
a run of another configuration starts afresh beside them. A checkpoint is TRL's (weights, optimizer, scheduler,
random states, trainer state) plus the curves so far and `meta.json`, assembled in a hidden temporary directory,
fsynced and renamed into place as `step-XXXXXXXX/` (the layout of `rewardlab.training.checkpoint`): a run
killed at any moment leaves the previous checkpoint or the new one, never a partial one that looks complete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rewardlab.training.checkpoint import (META, checkpoint_name, fsync_path, list_checkpoints, publish_checkpoint,
                                           read_meta, remove_stale_temporaries)

CURVES_FILE = "curves.json"
FORMAT_VERSION = 1


def run_fingerprint(cfg, policy_path: str | Path, train_prompts: Sequence[str], eval_prompts: Sequence[str],
                    identity: Mapping[str, Any] | None = None) -> str:
    """A key of everything the run's results depend on: the configuration (less its observational settings),
    the policy directory (its files' names, sizes and modification times), the prompts and `identity` (e.g.
    the proxy's source)."""
    settings = {key: value for key, value in cfg.to_dict().items() if key not in type(cfg).observational_fields()}
    record = {
        "format": FORMAT_VERSION,
        "settings": settings,
        "policy": _directory_stamp(Path(policy_path)),
        "train_prompts": _digest(list(train_prompts)),
        "eval_prompts": _digest(list(eval_prompts)),
        "identity": dict(identity or {}),
    }
    return _digest(record)[:16]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def _directory_stamp(directory: Path) -> list:
    if not directory.is_dir():
        raise ValueError(f"policy directory '{directory}' does not exist")
    stamp = [str(directory.resolve())]
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        stamp.append([path.relative_to(directory).as_posix(), stat.st_size, stat.st_mtime_ns])
    return stamp


def run_directory(state_dir: str | Path, fingerprint: str) -> Path:
    return Path(state_dir) / f"run-{fingerprint}"


def latest_checkpoint(run_dir: Path, fingerprint: str) -> Path | None:
    """The newest complete checkpoint of this run (its meta.json names the same fingerprint), else None."""
    remove_stale_temporaries(run_dir)
    for checkpoint in reversed(list_checkpoints(run_dir)):
        if read_meta(checkpoint).get("fingerprint") == fingerprint:
            return checkpoint
    return None


def restored_rows(checkpoint: Path) -> list[dict[str, Any]]:
    return json.loads((Path(checkpoint) / CURVES_FILE).read_text())


def staging_directory(run_dir: Path, step: int) -> Path:
    """Where the trainer writes the checkpoint of `step` before it is complete (`remove_stale_temporaries`
    deletes what a killed run left there)."""
    return Path(run_dir) / f".tmp-{checkpoint_name(step)}"


def commit_checkpoint(staged: Path, run_dir: Path, step: int, fingerprint: str,
                      rows: list[dict[str, Any]], keep: int = 1) -> Path:
    """Add the curves and meta.json to the staged checkpoint, sync it to disk and rename it into place as
    `run_dir/step-XXXXXXXX`; then older checkpoints beyond `keep` are removed."""
    staged, run_dir = Path(staged), Path(run_dir)
    (staged / CURVES_FILE).write_text(json.dumps(rows))
    # meta.json last: a directory without it is never taken for a checkpoint.
    meta = {"fingerprint": fingerprint, "step": int(step), "format": FORMAT_VERSION}
    (staged / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    for path in sorted(staged.rglob("*"), key=lambda p: -len(p.parts)):  # files first, then their folders
        fsync_path(path)
    return publish_checkpoint(staged, run_dir, step, keep)
