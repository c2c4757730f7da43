"""Market strategy: time to score 10,000 offers (a pure-function benchmark, no network).

    .venv/bin/python bench/market_score.py [--offers 10000] [--rounds 5]

Offers are what the local providers publish (golem_deploy.localnet.provider.offer_properties),
with 10,000 different linear prices; the price caps reject roughly the dearer half. One
round = `engine.market.score_offer` on every offer, then picking the cheapest accepted one
(what the engine does when it signs an agreement).
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, stats

from golem_deploy.engine.market import PriceCaps, score_offer
from golem_deploy.localnet.provider import PLATFORM, offer_properties


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    offers = [
        offer_properties(i % 2000 + 1, f"provider-{i}", f"0x{i:040x}") for i in range(args.offers)
    ]
    # provider k's start price is 0.001*(k-1): this cap accepts about half of them
    caps = PriceCaps(start=Decimal("1.0"), cpu_per_hour=None, env_per_hour=None)
    samples = []
    accepted = 0
    for _ in range(args.rounds):
        began = time.perf_counter()
        scores = [
            score_offer(props, caps, platform=PLATFORM, expected_seconds=3600.0) for props in offers
        ]
        ok = [(s.expected_cost, i) for i, s in enumerate(scores) if s.accepted]
        best = min(ok) if ok else None
        samples.append(time.perf_counter() - began)
        accepted = len(ok)
    assert best is not None
    emit({"offers": args.offers, "accepted": accepted, "score_s": stats(samples, digits=4)})


if __name__ == "__main__":
    main()
