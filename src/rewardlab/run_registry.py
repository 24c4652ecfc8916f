"""Which process owns each MLflow run that `kedro run` opens, and what becomes of runs whose process died.

A run stopped by SIGKILL (`kill -9`, the OOM killer, a scheduler's hard stop) never reaches the code that ends
its MLflow run, so the run reads RUNNING for good. Each run the project opens is tagged with the process that
owns it: its pid, its host, the id of the host's current boot and the process's start time (so that a pid
the kernel handed to another process since is not taken for the owner). `mark_dead_runs_killed` then sets
every RUNNING run whose owner is gone to KILLED.

A run is marked only when its owner is known to be gone: runs without these tags (opened by another tool, an
orchestrator, an older version of the project), runs of other hosts and runs whose process cannot be checked
are left as they are. Linux only for the start time (``/proc``); elsewhere the pid alone is checked.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)

PID_TAG = "rewardlab.pid"
HOST_TAG = "rewardlab.host"
BOOT_ID_TAG = "rewardlab.boot_id"
PROCESS_START_TAG = "rewardlab.process_start"

KILLED = "KILLED"
_PROC = Path("/proc")
_BOOT_ID_FILE = _PROC / "sys" / "kernel" / "random" / "boot_id"
_GONE_STATES = ("Z", "X")  # a zombie (killed, not yet reaped by its parent) or a dead task


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, told apart from any later process that is given the same pid."""

    pid: int
    host: str
    boot_id: str | None = None
    start: str | None = None  # clock ticks from boot to the process's start (/proc/<pid>/stat, field 22)

    def tags(self) -> dict[str, str]:
        tags = {PID_TAG: str(self.pid), HOST_TAG: self.host}
        if self.boot_id:
            tags[BOOT_ID_TAG] = self.boot_id
        if self.start:
            tags[PROCESS_START_TAG] = self.start
        return tags

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> ProcessIdentity | None:
        """The owner a run's tags name, or None when they name none (or no valid pid)."""
        pid, host = tags.get(PID_TAG, ""), tags.get(HOST_TAG, "")
        if not pid.isdigit() or int(pid) <= 0 or not host:
            return None  # pid 0 or less would mean process groups to os.kill: never a run's owner
        return cls(int(pid), host, tags.get(BOOT_ID_TAG) or None, tags.get(PROCESS_START_TAG) or None)


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    run_name: str
    experiment_id: str
    owner: ProcessIdentity
    reason: str

    def message(self) -> str:
        return (f"Marked MLflow run {self.run_id} ({self.run_name}) {KILLED}: its process {self.owner.pid} on host "
                f"{self.owner.host} {self.reason}")


def current_process() -> ProcessIdentity:
    pid = os.getpid()
    stat = _read_stat(pid)
    return ProcessIdentity(pid, socket.gethostname(), _boot_id(), stat[1] if stat else None)


def tag_run(client: Any, run_id: str, owner: ProcessIdentity | None = None) -> None:
    """Records `owner` (this process by default) as the process that owns the run."""
    from mlflow.entities import RunTag

    tags = (owner or current_process()).tags()
    client.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])


def why_gone(owner: ProcessIdentity) -> str | None:
    """How we know `owner` (a process of this host) has ended, or None when it may still be running."""
    boot_id = _boot_id()
    if owner.boot_id and boot_id and owner.boot_id != boot_id:
        return "is gone (the host has restarted since)"
    try:
        os.kill(owner.pid, 0)  # signal 0: nothing is sent, only whether the pid exists is checked
    except ProcessLookupError:
        return "is gone"
    except PermissionError:
        pass  # another user's process: it exists
    stat = _read_stat(owner.pid)
    if stat is None:
        return None  # exists, yet /proc does not show it (no /proc, or hidden): cannot tell, so keep the run
    state, start = stat
    if state in _GONE_STATES:
        return "is gone"
    if owner.start and start != owner.start:
        return f"is gone (pid {owner.pid} now belongs to another process)"
    return None


def find_dead_runs(client: Any, host: str | None = None) -> list[DeadRun]:
    """The RUNNING runs, across the store's active experiments, owned by a process of `host` that has ended."""
    host = host or socket.gethostname()
    experiment_ids = [e.experiment_id for e in _all_pages(client.search_experiments)]
    dead = []
    for start in range(0, len(experiment_ids), 100):  # a bounded number of ids per query
        runs = _all_pages(client.search_runs, experiment_ids=experiment_ids[start:start + 100],
                          filter_string="attributes.status = 'RUNNING'")
        for run in runs:
            owner = ProcessIdentity.from_tags(run.data.tags)
            if owner is None or owner.host != host:
                continue
            reason = why_gone(owner)
            if reason:
                dead.append(DeadRun(run.info.run_id, run.info.run_name or "", run.info.experiment_id, owner, reason))
    return dead


def mark_dead_runs_killed(client: Any, host: str | None = None) -> list[DeadRun]:
    """Sets every run `find_dead_runs` finds to KILLED, logging each one; returns them."""
    dead = find_dead_runs(client, host)
    for run in dead:
        client.set_terminated(run.run_id, KILLED)
        logger.warning(run.message())
    return dead


def _all_pages(search: Any, **kwargs: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _read_stat(pid: int) -> tuple[str, str] | None:
    """The state and start time of `pid` from /proc, or None where /proc does not show it."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')': split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # field 3 (state) and field 22 (starttime)


def _boot_id() -> str | None:
    try:
        return _BOOT_ID_FILE.read_text().strip() or None
    except OSError:
        return None
