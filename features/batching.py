"""Length-bucketed batching.

Samples are sorted by cost (seconds, tokens) and greedily packed so that the padded
size of a batch, ``len(batch) * max(cost)``, stays within a budget: padding only
happens inside a bucket of similar lengths. Models whose output changes with
zero-padding even under an attention mask (Wav2Vec2 with group norm) set
``equal_cost_only`` so that a batch only ever holds inputs of identical length.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    max_items: int = 1
    #: budget for ``len(batch) * max(cost)`` (e.g. padded seconds of audio, padded tokens)
    max_cost: float = float("inf")
    #: only batch samples whose cost is exactly equal (group-norm speech models)
    equal_cost_only: bool = False


def make_batches(costs: dict[str, float], policy: BatchPolicy) -> list[list[str]]:
    """Group sample ids into batches; deterministic for the same input.

    Sorted by (cost, id); a new batch starts when adding the next sample would exceed
    ``max_items`` or the padded budget, or (with ``equal_cost_only``) when its cost differs.
    """
    order = sorted(costs, key=lambda i: (costs[i], i))
    batches: list[list[str]] = []
    current: list[str] = []
    current_max = 0.0
    for sample_id in order:
        cost = costs[sample_id]
        if current:
            new_max = max(current_max, cost)
            too_many = len(current) + 1 > policy.max_items
            too_big = new_max * (len(current) + 1) > policy.max_cost
            other_length = policy.equal_cost_only and cost != current_max
            if too_many or too_big or other_length:
                batches.append(current)
                current, current_max = [], 0.0
        current.append(sample_id)
        current_max = max(current_max, cost)
    if current:
        batches.append(current)
    return batches
