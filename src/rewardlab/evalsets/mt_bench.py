"""MT-Bench human and GPT-4 judgments (``lmsys/mt_bench_human_judgments``) as conversational pairs."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from rewardlab.evalsets.rows import EvalSetFormatError, _field, _frame, _messages, _records

MT_BENCH_HUB_ID = "lmsys/mt_bench_human_judgments"
MT_BENCH_SPLITS = ("human", "gpt4_pair")


def _assistant_index(conversation: list[dict], turn: int) -> int | None:
    """Position of the turn-th assistant message (turn counts from 1), None when there is none."""
    positions = [k for k, message in enumerate(conversation) if message["role"] == "assistant"]
    return positions[turn - 1] if 0 < turn <= len(positions) else None


def _shared_prefix(a: list[dict], b: list[dict]) -> int:
    return next((k for k, (left, right) in enumerate(zip(a, b)) if left != right), min(len(a), len(b)))


def mt_bench_to_pairs(
    rows,
    split: str = "human",
    keep_ties: bool = False,
    turns: Iterable[int] = (1, 2),
    source: str = "mt_bench",
) -> tuple[pd.DataFrame, int]:
    """MT-Bench judgments (``lmsys/mt_bench_human_judgments``) to conversational pairs.

    Each row judges ``conversation_a`` against ``conversation_b`` at ``turn`` (1 or 2). The judged answer
    is the turn-th assistant message of each conversation. The prompt is the longest run of messages the
    two conversations share before their judged answers; chosen/rejected are the rest of each side's
    conversation up to and including its judged answer. So for turn 1 the prompt is the first user message
    and chosen/rejected are single assistant messages; for turn 2 the two sides already differ in their
    turn-1 answers, so the prompt is the first user message and chosen/rejected are each side's own
    continuation ``[turn-1 answer, second user message, turn-2 answer]``: the reward model scores each
    side's full dialogue, as the judge saw it. (Those responses hold a user message, which
    ``schema.pair_texts`` renders like any other message but ``schema.validate_pairs`` reports as a bad
    role; ``turns=(1,)`` keeps only turn-1 judgments, which are plain prompt/answer pairs.)

    Ties (``winner`` starting with "tie", e.g. "tie (bothbad)") are left out unless ``keep_ties``; then
    they are kept with model_a as "chosen", margin 0 and ``is_tie`` True. Returns ``(pairs, n_ties)``
    where ``n_ties`` counts the tie rows (dropped or kept). Extra columns: question_id, turn, judge,
    model_chosen, model_rejected, is_tie; ``subset`` is ``f"{split}/turn{turn}"``. Rows of other turns
    than ``turns`` are left out before ties are counted.
    """
    set_name = f"{source}/{split}"
    wanted_turns = {int(t) for t in turns}
    records, n_ties = [], 0
    for i, row in enumerate(_records(rows)):
        turn = int(_field(row, "turn", set_name, i))
        if turn not in wanted_turns:
            continue
        winner = str(_field(row, "winner", set_name, i))
        is_tie = winner.startswith("tie")
        if not is_tie and winner not in ("model_a", "model_b"):
            raise EvalSetFormatError(f"{set_name}: row {i} field 'winner' has unknown value {winner!r}")
        n_ties += is_tie
        if is_tie and not keep_ties:
            continue
        conv_a = _messages(_field(row, "conversation_a", set_name, i), set_name, i, "conversation_a")
        conv_b = _messages(_field(row, "conversation_b", set_name, i), set_name, i, "conversation_b")
        end_a, end_b = _assistant_index(conv_a, turn), _assistant_index(conv_b, turn)
        if end_a is None or end_b is None:
            field = "conversation_a" if end_a is None else "conversation_b"
            raise EvalSetFormatError(f"{set_name}: row {i} field {field!r} has no assistant answer for turn {turn}")
        shared = _shared_prefix(conv_a[:end_a], conv_b[:end_b])
        side_a, side_b = conv_a[shared : end_a + 1], conv_b[shared : end_b + 1]
        a_wins = winner == "model_a" or is_tie
        records.append(
            {
                "id": f"{source}/{split}/{i}",
                "prompt": conv_a[:shared],
                "chosen": side_a if a_wins else side_b,
                "rejected": side_b if a_wins else side_a,
                "margin": 0.0 if is_tie else math.nan,
                "source": set_name,
                "subset": f"{split}/turn{turn}",
                "question_id": row.get("question_id"),
                "turn": turn,
                "judge": row.get("judge"),
                "model_chosen": row.get("model_a") if a_wins else row.get("model_b"),
                "model_rejected": row.get("model_b") if a_wins else row.get("model_a"),
                "is_tie": is_tie,
            }
        )
    extra = ["question_id", "turn", "judge", "model_chosen", "model_rejected", "is_tie"]
    return _frame(records, extra), n_ties
