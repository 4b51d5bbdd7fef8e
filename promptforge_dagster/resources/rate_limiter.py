"""The rate-limiter resource: one adaptive controller per lane (provider, model, key)."""

from __future__ import annotations

import time
from typing import Optional

import dagster as dg

from promptforge_dagster.core.rate.config import RateConfig
from promptforge_dagster.core.rate_controller import FixedRateController
from promptforge_dagster.core.rate_lanes import RateLanes


class RateLimiterResource(dg.ConfigurableResource):
    """Adaptive pacing by default (learned while running; hints are start points, not
    caps). ``fixed_rpm``/``fixed_tpm`` switch to a fixed token bucket instead."""

    window_s: float = 30.0
    rpm_hint: Optional[float] = None
    tpm_hint: Optional[float] = None
    fixed_rpm: Optional[float] = None
    fixed_tpm: Optional[float] = None
    share_lanes: bool = True  # share learned limits with other jobs on the lane (warm start, fair share)

    def lanes(self, key_hash: str, default_provider: str = "openai", max_in_flight: Optional[int] = None,
              api_base: Optional[str] = None) -> RateLanes:
        """``api_base``: where the job's provider is called (None: its own endpoint), which
        says whether its lanes' server is a hosted API (``core/rate/hosted.py``)."""
        if self.fixed_rpm or self.fixed_tpm:
            return RateLanes(lambda _lane: FixedRateController(self.fixed_rpm, now=time.monotonic(), tpm=self.fixed_tpm),
                             key_hash=key_hash, default_provider=default_provider)
        config = RateConfig(window_s=self.window_s, rpm_hint=self.rpm_hint, tpm_hint=self.tpm_hint,
                            max_in_flight=max_in_flight)
        return RateLanes.adaptive(config, key_hash=key_hash, default_provider=default_provider, clock=time.monotonic,
                                  api_base=api_base)
