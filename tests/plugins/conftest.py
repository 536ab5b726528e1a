"""Fixtures of the plugin tests: the built library (a missing library FAILS the CPU tests: CI builds
it) and random 3DNA problems."""

from __future__ import annotations

import pytest

from nuwa.plugins import library


@pytest.fixture(scope="session")
def plugin_lib():
    """The loaded ``libnuwa_plugins.so``; fails (not skips) with the build command if missing."""
    try:
        return library.load_library()
    except library.PluginLibraryError as e:
        pytest.fail(f"{e}", pytrace=False)
