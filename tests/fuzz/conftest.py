"""Prints how many inputs the fuzz tests fed, for the figures in README.md."""

from __future__ import annotations

import pytest

from tests.fuzz.oracle import BATCH, EXAMPLES, FED, REACHED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FED:
        return
    total = sum(FED.values())
    per_test = f"{EXAMPLES} examples per test, {BATCH} inputs each"
    terminalreporter.write_sep("-", f"fuzz: {total} inputs ({per_test})")
    for name, count in sorted(FED.items()):
        terminalreporter.write_line(f"{name}: {count}")
    if REACHED:
        terminalreporter.write_line(
            "states reached (per chunk): "
            + ", ".join(f"{state} {count}" for state, count in sorted(REACHED.items()))
        )
