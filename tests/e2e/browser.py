"""Helpers for tests that look at the project's web UIs: a free local port, a server process started on
127.0.0.1 and stopped with its whole process group, and headless Chromium (rendered DOM, screenshot)."""

from __future__ import annotations

import html.parser
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = "127.0.0.1"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_MISSING = ("no Chromium found ($CHROMIUM, or chromium on PATH): install it with .ci/install-browser "
                    "(Debian: apt-get install chromium)")
# Headless and offline: no GPU, no first-run, sync, component or background traffic, nothing kept between runs.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests may run as root (containers), where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    """The Chromium (or Chrome) executable: $CHROMIUM when set, else the first of CHROMIUM_NAMES on PATH."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return shutil.which(configured)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class ServerProcess:
    """A server started in its own session (process group) with output to a log file.

    ``with ServerProcess(cmd, ready_url=...) as server:`` waits until ``ready_url`` answers 200 (raising with
    the log's tail if the process exits first or the time runs out) and, on exit, stops every process of the
    group: SIGTERM, then SIGKILL for whatever is still alive after ``stop_timeout`` seconds.
    """

    def __init__(self, command: Sequence[str], ready_url: str, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None, log_path: Path | str | None = None,
                 start_timeout: float = 120.0, stop_timeout: float = 15.0) -> None:
        self.command = [str(part) for part in command]
        self.ready_url = ready_url
        self.cwd = cwd
        self.env = env
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited with {self.process.returncode} before answering "
                                   f"{self.ready_url}:\n{self.log_tail()}")
            try:
                if http_get(self.ready_url, timeout=5)[0] == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.ready_url} did not answer within {self.start_timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the process group and reap the leader; safe to call twice."""
        if self.process is None:
            return
        pgid = self.process.pid  # start_new_session: the leader's pid is the group's id
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + self.stop_timeout
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        try:
            self.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass
        self.process = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_chromium(chromium: str, url: str, *args: str, profile_dir: Path | str, budget_ms: int = 15000,
                 window_size: str = "1400,900", timeout: float = 120.0) -> subprocess.CompletedProcess:
    """One headless Chromium call on ``url``; ``args`` add the action (--dump-dom, --screenshot=...)."""
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--virtual-time-budget={budget_ms}",
               f"--window-size={window_size}", *args, url]
    env = os.environ | {"HOME": str(profile_dir)}  # nothing lands in the real home directory
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def dump_dom(chromium: str, url: str, profile_dir: Path | str, budget_ms: int = 15000,
             window_size: str = "1400,900", timeout: float = 120.0) -> str:
    """The DOM after the page's scripts ran for ``budget_ms`` of virtual time, serialized as HTML. Grids render
    only the columns that fit ``window_size``."""
    result = run_chromium(chromium, url, "--dump-dom", profile_dir=profile_dir, budget_ms=budget_ms,
                          window_size=window_size, timeout=timeout)
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"chromium --dump-dom {url} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def screenshot(chromium: str, url: str, path: Path, profile_dir: Path | str, budget_ms: int = 15000,
               window_size: str = "1400,900", timeout: float = 120.0) -> Path:
    """A PNG of the rendered page at ``path``."""
    path = Path(path)
    result = run_chromium(chromium, url, f"--screenshot={path}", profile_dir=profile_dir, budget_ms=budget_ms,
                          window_size=window_size, timeout=timeout)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(f"chromium --screenshot {url} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return path


def png_stats(path: Path) -> dict[str, float]:
    """Width, height, number of distinct colours and pixel standard deviation of a PNG (via matplotlib)."""
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(str(path))  # floats in [0, 1], H x W x (3 or 4)
    rgb = (pixels[..., :3] * 255).round().astype(np.uint8).reshape(-1, 3)
    return {
        "height": float(pixels.shape[0]),
        "width": float(pixels.shape[1]),
        "colours": float(len(np.unique(rgb, axis=0))),
        "std": float(rgb.std()),
    }


class ElementCollector(html.parser.HTMLParser):
    """Collects elements of a serialized DOM: tag, attributes and the text directly inside them."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": ""}
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append({"tag": tag, "attrs": {k: v or "" for k, v in attrs}, "text": ""})

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index]["tag"] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1]["text"] += data


def elements(dom: str, predicate: Callable[[dict], bool] | None = None) -> list[dict]:
    """Elements of ``dom`` (as ElementCollector records), optionally filtered."""
    collector = ElementCollector()
    collector.feed(dom)
    collector.close()
    return [e for e in collector.elements if predicate is None or predicate(e)]


def has_class(element: dict, name: str) -> bool:
    return name in element["attrs"].get("class", "").split()


def page_title(dom: str) -> str:
    titles = elements(dom, lambda e: e["tag"] == "title")
    return titles[0]["text"].strip() if titles else ""


class GridCollector(html.parser.HTMLParser):
    """The cells of data grids (ag-grid, as the MLflow UI's runs table) in a serialized DOM: each cell's text,
    everything inside it, by the `row-id` of its row (MLflow: the run id) and its `col-id`. A row that the grid
    splits into a pinned and a scrolled part comes together under its one id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict[str, list[str]]] = {}
        self._open: list[tuple[str, str | None, str | None]] = []  # tag, row id, column id

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ElementCollector.VOID:
            return
        attributes = dict(attrs)
        row = attributes.get("row-id") if attributes.get("role") == "row" else None
        column = attributes.get("col-id") if attributes.get("role") == "gridcell" else None
        self._open.append((tag, row, column))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        row = next((r for _, r, _ in reversed(self._open) if r), None)
        column = next((c for _, _, c in reversed(self._open) if c), None)
        if row and column and data.strip():
            self.rows.setdefault(row, {}).setdefault(column, []).append(data.strip())


def grid_cells(dom: str) -> dict[str, dict[str, str]]:
    """{row id: {column id: the cell's text, its parts joined by spaces}} of the grids in ``dom``."""
    collector = GridCollector()
    collector.feed(dom)
    collector.close()
    return {row: {column: " ".join(parts) for column, parts in cells.items()} for row, cells in collector.rows.items()}
