"""Fast weighted random choice over a fixed list."""

from __future__ import annotations

import bisect
import itertools
import random


class WeightedChoice:
    """Fast weighted choice over a fixed list (cumulative weights + bisect)."""

    def __init__(self, items: list, weights: list[float]) -> None:
        self.items = items
        self.cumulative = list(itertools.accumulate(weights))

    def __bool__(self) -> bool:
        return bool(self.items) and self.cumulative[-1] > 0

    def pick(self, rng: random.Random):
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]
