"""Shared test set-up. Each room keeps its fixtures in tests/fixtures/<room>.py."""

import pytest

# Helpers under tests/support assert too: let pytest explain their failures as it does in tests.
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.fixtures.prefect",
    "tests.fixtures.meta",
    "tests.fixtures.vault",
    "tests.fixtures.slack",
    "tests.fixtures.stack",
    "tests.fixtures.postgres",
    "tests.fixtures.workers",
]
