"""Prints how many inputs the fuzz tests fed, for the figures in README.md."""

from __future__ import annotations

import pytest

from tests.fuzz.oracle import EXAMPLES, FED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FED:
        return
    total = sum(FED.values())
    terminalreporter.write_sep("-", f"fuzz: {total} inputs ({EXAMPLES} examples per test)")
    for name, count in sorted(FED.items()):
        terminalreporter.write_line(f"{name}: {count}")
