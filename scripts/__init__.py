"""Maintenance scripts. `reliability_report` runs as a module from the repository root
(`python -m scripts.reliability_report`); the others also run as plain scripts."""
