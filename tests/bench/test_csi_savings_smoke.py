"""Keeps bench/csi_savings.py from rotting: a tiny run, checking counts, not timings. The
counts are exact (a fixed churn sequence), so they also check what CSI holds back."""

from __future__ import annotations

import argparse
import asyncio

from bench.csi_savings import main_async, report


def test_csi_savings_runs_and_counts() -> None:
    args = argparse.Namespace(
        contacts=5, changes=30, rate=1000.0, time_limit=30.0, message_every=10, seed=1
    )
    churn, with_messages = asyncio.run(main_async(args))
    # 30 changes, three of which go unavailable and come back: 33 presences per watcher.
    for figures in (churn, with_messages):
        assert figures.changes == 30
        assert figures.active_presences == 33
    # Presence alone: nothing reaches the inactive watcher until <active/>, which brings at
    # most the latest presence of each contact.
    assert churn.inactive_presences == 0 and churn.inactive_bytes == 0
    assert 0 < churn.flush_presences <= 5
    assert churn.saving > 0
    # Messages go out at once and take what was held with them.
    assert with_messages.messages == 3
    assert with_messages.inactive_presences > 0
    assert with_messages.inactive_presences + with_messages.flush_presences < 33
    assert "| presence churn |" in report([churn, with_messages], 5)
