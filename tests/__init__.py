"""The test suite; its shared helpers are in `tests.support`."""
