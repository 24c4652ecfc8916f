"""`kedro run --pipeline ingest` on raw training pairs a user might hand it: a file saved by a Windows editor
is read, and a source with no usable pair stops the run naming the file and why, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from project_copy import kedro, make_project_copy

pytestmark = pytest.mark.slow

RAW_FILE = "data/01_raw/raw_pairs.jsonl"  # in the project: Kedro makes the catalog's path absolute


def _project_reading(tmp_path: Path, content: bytes) -> Path:
    """A project copy whose `raw_train_pairs` is RAW_FILE holding `content`."""
    project = make_project_copy(tmp_path / "p")
    (project / RAW_FILE).parent.mkdir(parents=True, exist_ok=True)
    (project / RAW_FILE).write_bytes(content)
    catalog = {"raw_train_pairs": {"type": "rewardlab.datasets.PairSourceDataset",
                                   "source": {"path": RAW_FILE, "format": "pairs"}}}
    (project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(catalog))
    return project


def _squash(text: str) -> str:
    return "".join(text.split())


def _versions(project: Path, dataset: str) -> list[Path]:
    folder = project / "data" / "03_primary" / dataset
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_a_file_with_a_byte_order_mark_and_crlf_line_ends_is_ingested(tmp_path):
    rows = [{"prompt": f"Question {i}?", "chosen": f" answer {i}", "rejected": f" nonsense {i}"} for i in range(60)]
    content = ("\ufeff" + "".join(json.dumps(row) + "\r\n" for row in rows)).encode("utf-8")
    project = _project_reading(tmp_path, content)

    kedro(project, "run", "--pipeline", "ingest")

    (train_version,) = _versions(project, "train_pairs.parquet")
    train = pd.read_parquet(train_version / "train_pairs.parquet")
    assert len(train) == 20  # 60 pairs less the 40 held out for validation (TINY_PARAMETERS)
    report_dir = project / "data" / "08_reporting" / "ingest_report.json"
    (report_version,) = [p for p in report_dir.iterdir() if not p.name.startswith(".")]
    report = json.loads((report_version / "ingest_report.json").read_text())
    assert report["rows_kept"] == 60 and report["rows_dropped"] == 0 and report["source"] == str(project / RAW_FILE)


@pytest.mark.parametrize("content, reason", [
    (b"", "no usable pairs: the source holds no rows"),
    (b"prompt,chosen,rejected\nHi,Hello!,Go away.\nBye,See you.,Whatever.\n",
     "no usable pairs: 3 rows dropped (undecodable: 3)"),
], ids=["empty", "csv_saved_as_jsonl"])
def test_a_source_without_usable_pairs_fails_the_run_naming_the_file_and_writes_nothing(tmp_path, content, reason):
    project = _project_reading(tmp_path, content)

    result = kedro(project, "run", "--pipeline", "ingest", check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    # Compared without whitespace: the console wraps long lines, paths included.
    assert _squash(f"{project / RAW_FILE}: {reason}") in _squash(output), output[-3000:]
    assert _versions(project, "train_pairs.parquet") == []
    assert _versions(project, "validation_pairs.parquet") == []
