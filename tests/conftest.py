"""Shared test set-up. Each room keeps its fixtures in tests/fixtures/<room>.py."""

pytest_plugins = [
    "tests.fixtures.prefect",
    "tests.fixtures.meta",
    "tests.fixtures.vault",
    "tests.fixtures.slack",
    "tests.fixtures.stack",
]
