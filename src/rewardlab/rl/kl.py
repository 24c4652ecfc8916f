"""KL of a policy to its reference, estimated on completions the policy sampled.

For a completion y sampled from the policy pi, log pi(y|x) - log pi_ref(y|x) is an unbiased estimate of
KL(pi(.|x) || pi_ref(.|x)); averaged over sampled completions it is the KL that over-optimization curves are
drawn against. Log-probabilities are summed over the completion's tokens, its end-of-sequence token included
(the policy chose to stop there), and nothing after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sampled_kl(policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence sum over the masked (sampled) tokens of log pi - log pi_ref: shape [batch]."""
    if policy_logprobs.shape != reference_logprobs.shape or policy_logprobs.shape != mask.shape:
        raise ValueError(f"log-probabilities and mask must share one shape, got {tuple(policy_logprobs.shape)}, "
                         f"{tuple(reference_logprobs.shape)} and {tuple(mask.shape)}")
    difference = policy_logprobs.double() - reference_logprobs.double()
    return (difference * mask.to(difference.dtype)).sum(dim=-1)


def completion_logprobs(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                        completion_mask: torch.Tensor, *, temperature: float = 1.0,
                        batch_size: int | None = None) -> torch.Tensor:
    """Log-probability of each completion token under `model`, [batch, completion length], 0 where masked.

    `prompt_ids` are left-padded (`prompt_mask` 0 on padding) and `completion_ids` right-padded
    (`completion_mask` 1 on the completion's tokens), the layout generation produces. Positions count from each
    row's first real token, as in generation, so padding does not move them. `temperature` divides the logits
    (the distribution sampled from at that temperature). No gradient is kept; rows go through the model
    `batch_size` at a time (all at once by default).
    """
    if prompt_ids.shape != prompt_mask.shape or completion_ids.shape != completion_mask.shape:
        raise ValueError("ids and masks must share their shapes")
    if prompt_ids.shape[0] != completion_ids.shape[0]:
        raise ValueError(f"{prompt_ids.shape[0]} prompts but {completion_ids.shape[0]} completions")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    device = next(model.parameters()).device
    prompt_length = prompt_ids.shape[1]
    rows = prompt_ids.shape[0]
    step = batch_size or max(rows, 1)
    pieces = []
    with torch.no_grad():
        for start in range(0, rows, step):
            part = slice(start, start + step)
            input_ids = torch.cat([prompt_ids[part], completion_ids[part]], dim=1).to(device)
            attention = torch.cat([prompt_mask[part], completion_mask[part]], dim=1).to(device)
            positions = (attention.long().cumsum(dim=-1) - 1).clamp(min=0)
            logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                           use_cache=False).logits
            # The logit at position t predicts token t + 1: the completion's tokens are read one position early.
            logits = logits[:, prompt_length - 1 : -1].float() / temperature
            targets = completion_ids[part].to(device)
            logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            pieces.append((logps * completion_mask[part].to(device)).cpu())
    return torch.cat(pieces, dim=0) if pieces else torch.zeros(completion_ids.shape)


def completion_tensors(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                       pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompts and right-padded completions (with their masks) from token-id lists."""
    from rewardlab.encoding import padded_batch

    prompts = padded_batch([list(ids) for ids in prompt_ids], pad_token_id, side="left")
    # An empty completion still gets one (masked) column, so every row has a shape.
    completions = padded_batch([list(ids) or [pad_token_id] for ids in completion_ids], pad_token_id, side="right")
    completion_mask = completions["attention_mask"].clone()
    for row, ids in enumerate(completion_ids):
        if not ids:
            completion_mask[row] = 0
    return {"prompt_ids": prompts["input_ids"], "prompt_mask": prompts["attention_mask"],
            "completion_ids": completions["input_ids"], "completion_mask": completion_mask}
