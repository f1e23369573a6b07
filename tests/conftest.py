"""Suite-wide test settings: root-only tests skip (with the reason) when not root."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (Mininet, tc, namespaces); CI runs it as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
