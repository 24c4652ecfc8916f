"""Reading preference data (JSONL, CSV, Parquet, Hugging Face datasets) and converting public formats to pairs.

:func:`load_pairs` reads the records named by a spec, converts each with the format's adapter (a pure function
from one source row to one pair row) and validates the result with :func:`rewardlab.schema.validate_records`.

Formats:
- ``pairs``: already the pair schema.
- ``trl_explicit``: TRL explicit-prompt rows (prompt/chosen/rejected, plain or conversational).
- ``trl_implicit``: TRL implicit-prompt rows (chosen/rejected only); the prompt is their shared beginning.
- ``hh_rlhf``: Anthropic HH-RLHF whole dialogues; the prompt is the shared dialogue up to "\\n\\nAssistant:".
- ``unified_feedback``: llm-blender/Unified-Feedback rated conversation pairs (conv_A/conv_B + ratings).
- ``skywork``: Skywork-Reward-Preference full conversations in chosen/rejected.
"""

from rewardlab.adapters.formats import (
    ADAPTERS,
    FORMATS,
    PAIR_FIELDS,
    adapt_hh_rlhf,
    adapt_pairs,
    adapt_skywork,
    adapt_trl_explicit,
    adapt_trl_implicit,
    adapt_unified_feedback,
    pairs_from_records,
)
from rewardlab.adapters.loading import SPEC_KEYS, check_spec, default_source, load_pairs
from rewardlab.adapters.readers import (
    RawRecords,
    read_csv,
    read_hf_dataset,
    read_jsonl,
    read_parquet,
    read_records,
)
from rewardlab.adapters.splitting import (
    check_responses,
    split_conversations,
    split_hh_dialogues,
    split_plain_texts,
)
from rewardlab.adapters.tables import dropped_rows_by_kind, require_usable_pairs, split_train_validation

__all__ = [
    "ADAPTERS",
    "FORMATS",
    "PAIR_FIELDS",
    "SPEC_KEYS",
    "RawRecords",
    "adapt_hh_rlhf",
    "adapt_pairs",
    "adapt_skywork",
    "adapt_trl_explicit",
    "adapt_trl_implicit",
    "adapt_unified_feedback",
    "check_responses",
    "check_spec",
    "default_source",
    "dropped_rows_by_kind",
    "load_pairs",
    "pairs_from_records",
    "read_csv",
    "read_hf_dataset",
    "read_jsonl",
    "read_parquet",
    "read_records",
    "require_usable_pairs",
    "split_conversations",
    "split_hh_dialogues",
    "split_plain_texts",
    "split_train_validation",
]
