"""Splitting a chosen/rejected pair of full texts or conversations into their shared prompt and two responses."""

from __future__ import annotations

import os
from typing import Any

from rewardlab.schema import ASSISTANT_MARKER, NO_SHARED_PROMPT, RowProblem, as_messages


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
    (reported by validation) instead of an empty pair.
    """
    chosen_messages = as_messages(chosen, chosen_field)
    rejected_messages = as_messages(rejected, rejected_field)
    shared = 0
    longest = min(len(chosen_messages), len(rejected_messages)) - 1
    while shared < longest and chosen_messages[shared] == rejected_messages[shared]:
        shared += 1
    return chosen_messages[:shared], chosen_messages[shared:], rejected_messages[shared:]
