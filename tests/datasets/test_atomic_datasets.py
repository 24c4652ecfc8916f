"""AtomicParquetDataset and AtomicJSONDataset: versioned like Kedro's own, and a save that dies half-way never
becomes the latest version."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version
from kedro_datasets.json import JSONDataset

from rewardlab.datasets import AtomicJSONDataset, AtomicParquetDataset
from rewardlab.datasets.atomic_datasets import is_partial_file

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def _parquet(path: Path, save: str | None = None, load: str | None = None) -> AtomicParquetDataset:
    return AtomicParquetDataset(filepath=str(path), version=Version(load, save))


def _json(path: Path, save: str | None = None, load: str | None = None) -> AtomicJSONDataset:
    return AtomicJSONDataset(filepath=str(path), version=Version(load, save))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _assert_v1_is_latest(path: Path, make) -> None:
    latest = make(path)
    assert latest.list_versions(full_path=False) == [V1]
    assert latest.resolve_load_version() == V1
    assert not (path / V2 / path.name).exists()


# ---- what Kedro's datasets do, unchanged ------------------------------------------------------------------


def test_parquet_versions_round_trip(tmp_path):
    path = tmp_path / "pairs.parquet"
    first, second = pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3, 4, 5], "b": ["x", "y", "z"]})
    _parquet(path, save=V1).save(first)
    _parquet(path, save=V2).save(second)
    pd.testing.assert_frame_equal(_parquet(path).load(), second)
    pd.testing.assert_frame_equal(_parquet(path, load=V1).load(), first)
    assert _parquet(path).list_versions(full_path=False) == [V2, V1]
    assert _files(tmp_path) == [f"pairs.parquet/{V1}/pairs.parquet", f"pairs.parquet/{V2}/pairs.parquet"]
    with pytest.raises(DatasetError, match="must not exist"):
        _parquet(path, save=V2).save(first)


def test_json_versions_round_trip_with_save_args(tmp_path):
    path = tmp_path / "report.json"
    AtomicJSONDataset(filepath=str(path), version=Version(None, V1), save_args={"indent": 4}).save({"rows": 1})
    _json(path, save=V2).save({"rows": 2})
    assert _json(path).load() == {"rows": 2}
    assert _json(path, load=V1).load() == {"rows": 1}
    assert (path / V1 / path.name).read_text() == json.dumps({"rows": 1}, indent=4)
    assert _files(tmp_path) == [f"report.json/{V1}/report.json", f"report.json/{V2}/report.json"]


def test_unversioned_save_and_an_automatic_save_version(tmp_path):
    plain = AtomicParquetDataset(filepath=str(tmp_path / "plain.parquet"))
    plain.save(pd.DataFrame({"a": [1]}))
    plain.save(pd.DataFrame({"a": [2]}))  # unversioned: replaced in place
    assert plain.load()["a"].tolist() == [2]
    auto = _parquet(tmp_path / "auto.parquet")
    with warnings.catch_warnings():
        # Kedro warns when the version a save picked differs from the one it then finds: one version only.
        warnings.simplefilter("error")
        auto.save(pd.DataFrame({"a": [1]}))
    assert len(auto.list_versions()) == 1 and auto.exists()
    assert _files(tmp_path) == [f"auto.parquet/{auto.resolve_load_version()}/auto.parquet", "plain.parquet"]


def test_the_catalog_builds_them_and_reports_their_arguments(tmp_path):
    catalog = DataCatalog.from_config({
        "pairs": {"type": "rewardlab.datasets.AtomicParquetDataset", "filepath": str(tmp_path / "p.parquet"),
                  "versioned": True, "save_args": {"index": False}},
        "report": {"type": "rewardlab.datasets.AtomicJSONDataset", "filepath": str(tmp_path / "r.json"),
                   "versioned": True},
    })
    catalog.save("pairs", pd.DataFrame({"a": [1]}))
    catalog.save("report", {"ok": True})
    assert catalog.load("report") == {"ok": True}
    config = catalog.to_config()[0]
    assert config["pairs"]["filepath"] == str(tmp_path / "p.parquet")
    assert config["pairs"]["save_args"] == {"index": False} and config["pairs"]["versioned"] is True
    assert "args" not in config["pairs"] and "kwargs" not in config["report"]


# ---- a save that fails half-way -----------------------------------------------------------------------------


def _half_written_parquet(self, path, **kwargs):
    """Writes the first half of a real Parquet file, then fails as a full disk would."""
    buffer = io.BytesIO()
    _REAL_TO_PARQUET(self, buffer, **kwargs)
    path.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    path.flush()
    raise OSError(28, "No space left on device")


_REAL_TO_PARQUET = pd.DataFrame.to_parquet


def test_a_parquet_save_failing_half_way_leaves_the_previous_version_latest(tmp_path, monkeypatch):
    path = tmp_path / "pairs.parquet"
    _parquet(path, save=V1).save(pd.DataFrame({"a": range(1000)}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _half_written_parquet)
    with pytest.raises(DatasetError, match="No space left on device"):
        _parquet(path, save=V2).save(pd.DataFrame({"a": range(5000)}))
    _assert_v1_is_latest(path, _parquet)
    assert _files(tmp_path) == [f"pairs.parquet/{V1}/pairs.parquet"]  # no temporary file, no empty version
    assert not (path / V2).exists()
    assert _parquet(path).load()["a"].tolist() == list(range(1000))


def test_a_json_save_failing_half_way_leaves_the_previous_version_latest(tmp_path):
    path = tmp_path / "report.json"
    _json(path, save=V1).save({"rows": 1})
    unserialisable = {"scores": list(range(100_000)), "model": object()}  # json.dump fails after the list
    with pytest.raises(DatasetError, match="not JSON serializable"):
        _json(path, save=V2).save(unserialisable)
    _assert_v1_is_latest(path, _json)
    assert _files(tmp_path) == [f"report.json/{V1}/report.json"]
    # What Kedro's own JSONDataset does with the same data: a partial file that is now the latest version.
    with pytest.raises(DatasetError):
        JSONDataset(filepath=str(path), version=Version(None, V2)).save(unserialisable)
    assert JSONDataset(filepath=str(path), version=Version(None, None)).resolve_load_version() == V2


def test_an_interrupt_half_way_cleans_up_too(tmp_path, monkeypatch):
    """A signal raised as an exception (KeyboardInterrupt, the run's SIGTERM handler) is no `Exception`."""

    def interrupted(self, path, **kwargs):
        path.write(b"PAR1" + b"\0" * 4096)
        raise KeyboardInterrupt

    path = tmp_path / "pairs.parquet"
    _parquet(path, save=V1).save(pd.DataFrame({"a": [1]}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _parquet(path, save=V2).save(pd.DataFrame({"a": [2]}))
    _assert_v1_is_latest(path, _parquet)
    assert _files(tmp_path) == [f"pairs.parquet/{V1}/pairs.parquet"]


def test_a_failed_unversioned_save_keeps_the_file_it_would_have_replaced(tmp_path, monkeypatch):
    dataset = AtomicParquetDataset(filepath=str(tmp_path / "corpus.parquet"))
    dataset.save(pd.DataFrame({"a": [1, 2, 3]}))
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _half_written_parquet)
    with pytest.raises(DatasetError):
        dataset.save(pd.DataFrame({"a": range(5000)}))
    monkeypatch.undo()
    assert dataset.load()["a"].tolist() == [1, 2, 3]
    assert _files(tmp_path) == ["corpus.parquet"]


# ---- a process killed while it saves ------------------------------------------------------------------------

# The child saves version V2 of `path`; STALL makes the writer stop half-way (and say so) until a signal comes.
CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    import numpy as np, pandas as pd
    from kedro.io.core import Version
    from rewardlab.datasets import AtomicParquetDataset

    path, version, rows, mode = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    real_to_parquet = pd.DataFrame.to_parquet

    def stalled(self, handle, **kwargs):
        handle.write(b"PAR1" + b"\\0" * 65536)
        handle.flush()
        (path.parent / "stalled").touch()
        time.sleep(120)

    def terminated(signum, frame):  # as the project's run hooks turn SIGTERM into an exception
        raise RuntimeError("received SIGTERM")

    if mode == "stall":
        pd.DataFrame.to_parquet = stalled
    signal.signal(signal.SIGTERM, terminated)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(4)})
    (path.parent / "writing").touch()
    AtomicParquetDataset(filepath=str(path), version=Version(None, version)).save(frame)
    (path.parent / "saved").touch()
""")


def _start_child(path: Path, rows: int, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), V2, str(rows), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(condition, child: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"no {what} (exit code {child.poll()}): {child.communicate()[0][-3000:]}")
        time.sleep(0.01)


def _finish(child: subprocess.Popen) -> str:
    try:
        return child.communicate(timeout=30)[0]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture
def first_version(tmp_path) -> Path:
    path = tmp_path / "pairs.parquet"
    _parquet(path, save=V1).save(pd.DataFrame({"c0": [0.5]}))
    return path


def test_sigkill_half_way_leaves_only_a_hidden_partial_file(first_version):
    path = first_version
    child = _start_child(path, rows=100, mode="stall")
    _wait_for(lambda: (path.parent / "stalled").exists(), child, "stalled write")
    child.send_signal(signal.SIGKILL)
    _finish(child)
    assert child.returncode == -signal.SIGKILL
    _assert_v1_is_latest(path, _parquet)
    left = [p.name for p in (path / V2).iterdir()]
    assert len(left) == 1 and is_partial_file(left[0]), left  # never under the real name
    assert _parquet(path).load()["c0"].tolist() == [0.5]


def test_sigterm_half_way_removes_the_partial_file(first_version):
    path = first_version
    child = _start_child(path, rows=100, mode="stall")
    _wait_for(lambda: (path.parent / "stalled").exists(), child, "stalled write")
    child.send_signal(signal.SIGTERM)
    output = _finish(child)
    assert child.returncode == 1 and "received SIGTERM" in output, output[-3000:]
    _assert_v1_is_latest(path, _parquet)
    assert not (path / V2).exists()


def test_sigkill_at_any_moment_of_a_large_save_leaves_a_loadable_latest_version(first_version):
    """Whenever the kill lands, the latest version is a complete file: the old one or the new one."""
    path = first_version
    rows = 2_000_000
    child = _start_child(path, rows=rows, mode="real")
    _wait_for(lambda: (path.parent / "writing").exists(), child, "save under way", timeout=120)
    # Killed as soon as the new version's first file shows up: mid-write, unless the write beats the poll.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and child.poll() is None:
        if (path / V2).is_dir() and any((path / V2).iterdir()):
            break
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    _finish(child)
    latest = _parquet(path).load()
    assert len(latest) in (1, rows)
    if len(latest) == 1:
        _assert_v1_is_latest(path, _parquet)
    assert _parquet(path, load=V1).load()["c0"].tolist() == [0.5]
