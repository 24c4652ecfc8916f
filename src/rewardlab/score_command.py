"""`rewardlab score INPUT OUTPUT --model SOURCE`: rewards for every row of a JSONL, CSV or Parquet file.

Rows are (prompt, response), scored into a `reward` column, or preference pairs in any format
`rewardlab.adapters` reads (prompt, chosen, rejected by default), scored into `reward_chosen` and
`reward_rejected`; plain text or chat messages. The output holds the input's rows with those columns added,
written in the format its suffix names. Bad input is refused before the model loads, naming file, line and
field, and nothing is written.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from rewardlab.commands import model_loading_options

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")
RESPONSES = "responses"
AUTO = "auto"


def _input_format(records: Sequence[Mapping], requested: str) -> str:
    """The requested format, or for "auto": responses when rows have a response, TRL implicit-prompt pairs when
    they have chosen and rejected but no prompt, else the pair schema."""
    if requested != AUTO:
        return requested
    keys = set().union(*(record.keys() for record in records)) if records else set()
    if "response" in keys:
        return RESPONSES
    if {"chosen", "rejected"} <= keys and "prompt" not in keys:
        return "trl_implicit"
    return "pairs"


def _output_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise click.ClickException(f"{path}: unsupported output type {suffix or '(no suffix)'!r}; expected "
                                   f"{', '.join(OUTPUT_SUFFIXES)}")
    return suffix


def _cell(value: Any) -> Any:
    """CSV cells are text: lists and mappings (chat messages) go in as JSON."""
    return json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (list, dict)) else value


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows to JSONL, CSV or Parquet by the path's suffix, atomically: a failed write leaves no file."""
    import pandas as pd

    suffix = _output_suffix(path)
    partial = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        if suffix == ".jsonl":
            with open(partial, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        elif suffix == ".csv":
            pd.DataFrame([{key: _cell(value) for key, value in row.items()} for row in rows]).to_csv(
                partial, index=False)
        else:
            pd.DataFrame(rows).to_parquet(partial, index=False)
        os.replace(partial, path)
    except (OSError, ValueError, TypeError, ImportError) as error:  # pyarrow's type errors are ValueErrors
        raise click.ClickException(f"{path}: cannot write the scored rows: {error}") from error
    finally:
        partial.unlink(missing_ok=True)


def _pair_rows(raw, data_format: str):
    """(pair table, the records it came from): ties, which carry no preference, are left out."""
    from rewardlab.adapters import pairs_from_records
    from rewardlab.schema import TIE

    pairs, issues = pairs_from_records(raw.records, data_format, raw.label, "fail", locations=raw.locations,
                                       unit=raw.unit, prior_issues=raw.issues)
    ties = {issue.row for issue in issues if issue.kind == TIE}
    if ties:
        click.echo(f"{len(ties)} tied row(s) left out: they prefer neither response", err=True)
    kept = [record for record, location in zip(raw.records, raw.locations) if location not in ties]
    return pairs, kept


def _with_rewards(records: Sequence[Mapping], columns: dict[str, Sequence[float]]) -> list[dict[str, Any]]:
    replaced = sorted(set(columns) & set().union(*(record.keys() for record in records)))
    if replaced:
        click.echo(f"the input's {', '.join(replaced)} column(s) are replaced by the new rewards", err=True)
    return [{**record, **{name: float(values[index]) for name, values in columns.items()}}
            for index, record in enumerate(records)]


@click.command("score")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.argument("output_path", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "source", required=True,
              help="Reward model or ensemble directory, exported model directory, or MLflow URI "
                   "(models:/<name>/<version>, runs:/<run_id>/reward_model).")
@click.option("--format", "data_format", default=AUTO, show_default=True,
              help="Row format: auto, responses (prompt, response), or a pair format of rewardlab.adapters "
                   "(pairs, trl_explicit, trl_implicit, hh_rlhf, unified_feedback, skywork). auto: responses "
                   "when rows have a response, else pairs (trl_implicit when they have no prompt).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Sequences per forward pass.")
@click.option("--max-length", default=512, show_default=True, type=click.IntRange(min=1),
              help="Tokens per scored sequence; longer ones keep the prompt's end and the response's start.")
@model_loading_options
def score(input_path: Path, output_path: Path, source: str, data_format: str, batch_size: int, max_length: int,
          device: str, dtype: str | None, tracking_uri: str | None) -> None:
    """Score every row of INPUT (JSONL, CSV or Parquet) and write them with their rewards to OUTPUT (.jsonl,
    .csv or .parquet)."""
    from rewardlab.adapters import FORMATS, read_records
    from rewardlab.errors import ExpectedError
    from rewardlab.scorer import load_scorer, response_rows

    if data_format not in (AUTO, RESPONSES, *FORMATS):
        raise click.BadParameter(f"{data_format!r}; expected one of {', '.join((AUTO, RESPONSES, *FORMATS))}",
                                 param_hint="--format")
    _output_suffix(output_path)
    if not output_path.parent.is_dir():
        raise click.ClickException(f"{output_path.parent}: no such directory for the output")
    if input_path.exists() and output_path.exists() and output_path.resolve() == input_path.resolve():
        raise click.ClickException(f"{output_path}: the output would overwrite the input")
    try:
        raw = read_records({"path": str(input_path)})
        data_format = _input_format(raw.records, data_format)
        if data_format == RESPONSES:
            prompts, responses = response_rows(raw.records, raw.label, raw.locations, raw.unit, raw.issues)
            records = raw.records
        else:
            pairs, records = _pair_rows(raw, data_format)
        if not records:
            raise click.ClickException(f"{input_path}: no rows to score")
        scorer = load_scorer(source, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype,
                             tracking_uri=tracking_uri)
    except (ExpectedError, FileNotFoundError, ValueError) as error:
        raise click.ClickException(f"{error}\nNothing written.") from error
    if data_format == RESPONSES:
        columns = {"reward": scorer.score(prompts, responses, progress=True)}
    else:
        chosen, rejected = scorer.score_frame(pairs, progress=True)
        columns = {"reward_chosen": chosen, "reward_rejected": rejected}
    write_rows(_with_rewards(records, columns), output_path)
    click.echo(f"Scored {len(records)} row(s) with {scorer.source} ({scorer.kind}) into {output_path}", err=True)
