"""Progress: a live line on a terminal, a quiet line per campaign otherwise (logs, CI, `mlflow run`)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_campaigns: int, stream=sys.stderr):
        self.total = total_campaigns
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.perf_counter()

    def step(self, campaign: int, step: int, budget: int, pass_at_1: float, reward: float | None) -> None:
        if not self.live:
            return
        reward_text = "" if reward is None else f"  reward {reward:.3f}"
        self.stream.write(f"\rcampaign {campaign + 1}/{self.total}  step {step:>3}/{budget}  "
                          f"pass@1 {pass_at_1:.3f}{reward_text}  [{time.perf_counter() - self.started:.0f}s]\033[K")
        self.stream.flush()

    def campaign_done(self, campaign: int, curve: list[float], decision: str) -> None:
        if self.live:
            self.stream.write("\n")
        peak = max(curve)
        after = f"; next: {decision}" if campaign + 1 < self.total else ""   # nothing comes after the last
        self.stream.write(f"campaign {campaign + 1}/{self.total}: pass@1 {curve[0]:.3f} -> peak {peak:.3f} "
                          f"(step {curve.index(peak)}) -> end {curve[-1]:.3f}{after}  "
                          f"[{time.perf_counter() - self.started:.0f}s]\n")
        self.stream.flush()
