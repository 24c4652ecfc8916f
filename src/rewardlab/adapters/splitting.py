"""Splitting a chosen/rejected pair of full texts or conversations into their shared prompt and two responses."""

from __future__ import annotations

import os
from typing import Any

from rewardlab.schema import (
    ASSISTANT_MARKER,
    NO_ASSISTANT_TURN,
    NO_SHARED_PROMPT,
    PROMPT_MISMATCH,
    RowProblem,
    as_messages,
    role_list,
)

EXCERPT_CHARS = 40


def split_plain_texts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen_response, rejected_response) from two full texts with a shared beginning.

    The prompt is the longest common prefix cut back to a turn boundary (the end of the last shared
    "\\n\\nAssistant:") when there is one, else to the start of the last shared run of whitespace, so the
    responses begin with that whitespace and no word is split.
    """
    common = os.path.commonprefix([chosen, rejected])
    marker = common.rfind(ASSISTANT_MARKER)
    if marker >= 0:
        cut = marker + len(ASSISTANT_MARKER)
    else:
        cut = len(common)
        while cut > 0 and not common[cut - 1].isspace():
            cut -= 1
        while cut > 0 and common[cut - 1].isspace():
            cut -= 1
    return chosen[:cut], chosen[cut:], rejected[cut:]


def split_hh_dialogues(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen_response, rejected_response) from two HH-RLHF dialogues.

    The prompt is the longest shared prefix that ends with "\\n\\nAssistant:"; normally that is everything
    up to the last assistant turn, and when the dialogues diverge earlier it is the last turn they share.
    Responses keep their leading space, so prompt + response is the original dialogue.
    """
    marker = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT_MARKER)
    if marker < 0:
        raise RowProblem("chosen+rejected", NO_SHARED_PROMPT, "the dialogues share no '\\n\\nAssistant:' turn")
    cut = marker + len(ASSISTANT_MARKER)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def split_conversations(chosen: Any, rejected: Any, chosen_field: str = "chosen",
                        rejected_field: str = "rejected") -> tuple[list, list, list]:
    """(prompt, chosen_messages, rejected_messages): the prompt is the common leading messages.

    At least one message stays in each response, so identical conversations become identical responses
    (reported by validation) instead of an empty pair. Conversations whose responses hold no assistant turn,
    or that part before a response, are refused by :func:`check_responses`.
    """
    chosen_messages = as_messages(chosen, chosen_field)
    rejected_messages = as_messages(rejected, rejected_field)
    shared = shared_length(chosen_messages, rejected_messages, min(len(chosen_messages), len(rejected_messages)) - 1)
    if chosen_messages != rejected_messages:
        check_responses(chosen_messages[shared:], rejected_messages[shared:], shared, chosen_field, rejected_field)
    return chosen_messages[:shared], chosen_messages[shared:], rejected_messages[shared:]


def shared_length(first: list, second: list, longest: int | None = None) -> int:
    """How many leading items two lists share (at most ``longest``)."""
    limit = min(len(first), len(second)) if longest is None else longest
    shared = 0
    while shared < limit and first[shared] == second[shared]:
        shared += 1
    return shared


def check_responses(chosen: list[dict], rejected: list[dict], first: int = 0, chosen_field: str = "chosen",
                    rejected_field: str = "rejected") -> None:
    """Refuse two response message lists that cannot form a pair, saying why.

    ``first`` is the position of the responses' first message in the whole conversation. A side without
    any assistant message has no response at all ("no assistant turn"); two sides that start with different
    messages of which one is not an assistant message are two different conversations ("prompts differ").
    """
    for field, messages in ((chosen_field, chosen), (rejected_field, rejected)):
        if messages and not any(message["role"] == "assistant" for message in messages):
            after = f" after the {first} shared message(s)" if first else ""
            raise RowProblem(field, NO_ASSISTANT_TURN, f"no assistant turn{after} (roles: {role_list(messages)})")
    if chosen and rejected and chosen[0] != rejected[0] and {chosen[0]["role"], rejected[0]["role"]} != {"assistant"}:
        raise RowProblem(f"{chosen_field}+{rejected_field}", PROMPT_MISMATCH,
                         f"prompts differ between {chosen_field} and {rejected_field} at message {first}: "
                         f"{chosen_field} has {_excerpt(chosen[0])}, {rejected_field} has {_excerpt(rejected[0])}")


def _excerpt(message: dict) -> str:
    text = " ".join(message["content"].split())
    if len(text) > EXCERPT_CHARS:
        text = text[:EXCERPT_CHARS].rstrip() + "..."
    return f"{message['role']} {text!r}"
