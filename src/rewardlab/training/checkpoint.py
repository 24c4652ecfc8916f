"""Resumable training state, written atomically.

A checkpoint is a directory `step-XXXXXXXX/` holding the trainable weights (safetensors), the optimizer
and scheduler states, one RNG-state file per process, the metric history and `meta.json` (step, epoch,
configuration hash). It is assembled in a hidden temporary directory beside it, fsynced, then renamed
into place, and the `latest` pointer file is replaced the same way: a run killed at any moment leaves
either the previous checkpoint or the new one, never a half-written one that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

PREFIX = "step-"
LATEST = "latest"
META = "meta.json"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used to resume this run."""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{int(step):08d}"


# --------------------------------------------------------------------------------------------- file system
def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _torch_save_synced(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old or the new content, never a partial file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _write_bytes_synced(tmp, text.encode("utf-8"))
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(directory) / META).read_text())
    except (OSError, ValueError):
        return None


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root` (those with a readable meta.json), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        if child.is_dir() and child.name.startswith(PREFIX) and child.name[len(PREFIX):].isdigit():
            if read_meta(child) is not None:
                found.append(child)
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def find_latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`.

    `latest` names it after every save; a run killed between renaming a checkpoint into place and
    replacing the pointer leaves the pointer one behind, so the directory scan decides.
    """
    complete = list_checkpoints(root)
    return complete[-1] if complete else None


def resolve_run_directory(state_dir: Path, config_hash: str) -> tuple[Path, Path | None]:
    """Where this configuration's checkpoints live, and the checkpoint to resume from (or None).

    `state_dir` itself holds the checkpoints of the first configuration trained there. When it holds
    checkpoints of a different configuration, those are left untouched and this run starts fresh (or
    resumes) in `state_dir/config-<hash>/` instead, so changing a parameter never resumes a wrong state.
    """
    state_dir = Path(state_dir)
    latest = find_latest_checkpoint(state_dir)
    if latest is None or read_meta(latest).get("config_hash") == config_hash:
        return state_dir, latest
    other = read_meta(latest).get("config_hash")
    run_dir = state_dir / f"config-{config_hash}"
    latest = find_latest_checkpoint(run_dir)
    if latest is not None and read_meta(latest).get("config_hash") != config_hash:
        raise CheckpointError(f"{latest} is named for configuration {config_hash} but records another hash")
    logger.warning(
        "%s holds checkpoints of another configuration (hash %s, this run %s); they are kept, and this run "
        "uses %s instead", state_dir, other, config_hash, run_dir,
    )
    return run_dir, latest


def remove_stale_temporaries(root: Path) -> None:
    """Delete temporary directories left by a run killed while saving (they were never renamed into place)."""
    root = Path(root)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith((f".tmp-{PREFIX}", f".trash-{PREFIX}")):
                shutil.rmtree(child, ignore_errors=True)
            elif child.name.startswith(f".{LATEST}.tmp-"):
                child.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- state
def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def capture_rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # numpy's state is stored as tensors and scalars so the file loads with weights_only=True.
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad)


def publish_checkpoint(staged: Path, root: Path, step: int, keep: int) -> Path:
    """Move the complete checkpoint directory `staged` (its files written and synced, meta.json last) into place
    as `root/step-XXXXXXXX`, point `latest` at it and keep the newest `keep`; returns its path. A process killed
    at any moment leaves the previous checkpoint or this one, never a partial one that looks complete."""
    final = root / checkpoint_name(step)
    fsync_path(staged)
    if final.exists():  # the same step saved again (a rerun): move the old one aside first
        trash = root / f".trash-{final.name}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staged, final)
    fsync_path(root)
    write_text_atomic(root / LATEST, final.name)
    for old in list_checkpoints(root)[: -max(int(keep), 1)]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(
    root: Path,
    step: int,
    *,
    accelerator,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    meta: dict[str, Any],
    history: list[dict[str, Any]],
    extra: dict[str, torch.Tensor] | None = None,
    keep: int = 2,
    sharded: bool = False,
) -> Path:
    """Write the state after `step` optimizer steps to `root/step-XXXXXXXX/`; every process must call this.

    `sharded`: the model is FSDP-sharded; its weights and optimizer state are gathered to process 0 and
    written in the unsharded layout (see `rewardlab.training.fsdp`)."""
    root = Path(root)
    if sharded:
        from rewardlab.training.fsdp import gathered_state

        weights, optimizer_state = gathered_state(model, optimizer)
    elif accelerator.is_main_process:
        weights, optimizer_state = trainable_state_dict(model), optimizer.state_dict()
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    _torch_save_synced(capture_rng_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file(weights, str(tmp / "trainable.safetensors"))
        fsync_path(tmp / "trainable.safetensors")
        _torch_save_synced(optimizer_state, tmp / "optimizer.pt")
        _torch_save_synced(scheduler.state_dict(), tmp / "scheduler.pt")
        _torch_save_synced(dict(extra or {}), tmp / "extra.pt")
        _write_bytes_synced(tmp / "history.json", json.dumps(history).encode("utf-8"))
        # meta.json last: a directory without it is never taken for a checkpoint.
        record = {**meta, "step": int(step), "num_processes": accelerator.num_processes, "format": FORMAT_VERSION}
        _write_bytes_synced(tmp / META, json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))
        publish_checkpoint(tmp, root, step, keep)
        logger.info("Saved training state at step %d to %s", step, final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(directory: Path, *, process_index: int, model: torch.nn.Module, optimizer,
                    scheduler, sharded: bool = False) -> dict[str, Any]:
    """Load weights, optimizer and scheduler in place; return meta, history, extra tensors and this
    process's RNG state (restored by the caller once everything that consumes randomness is built)."""
    directory = Path(directory)
    meta = read_meta(directory)
    if meta is None:
        raise CheckpointError(f"{directory} is not a complete checkpoint (no readable {META})")
    weights = load_file(str(directory / "trainable.safetensors"))
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        raise CheckpointError(
            f"{directory} holds weights for other parameters than this run trains "
            f"(missing {sorted(set(params) - set(weights))[:5]}, unexpected {sorted(set(weights) - set(params))[:5]})"
        )
    optimizer_state = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
    if sharded:
        from rewardlab.training.fsdp import load_gathered_state

        load_gathered_state(model, optimizer, weights, optimizer_state)
    else:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(weights[name].to(device=p.device, dtype=p.dtype))
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(torch.load(directory / "scheduler.pt", map_location="cpu", weights_only=True))
    rng_file = directory / f"rng-rank{process_index}.pt"
    if not rng_file.exists():
        raise CheckpointError(f"{directory} has no RNG state for process {process_index}")
    return {
        "meta": meta,
        "history": json.loads((directory / "history.json").read_text()),
        "extra": torch.load(directory / "extra.pt", map_location="cpu", weights_only=True),
        "rng": torch.load(rng_file, map_location="cpu", weights_only=True),
    }
