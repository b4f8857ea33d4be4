"""The shape the code keeps: a job's life readable in one short function, no class past 200 lines."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from processor import job

PROCESSOR = Path(job.__file__).parent


def test_a_job_s_life_is_one_function_of_at_most_30_lines() -> None:
    lines = inspect.getsource(job.life).rstrip().splitlines()
    assert len(lines) <= 30, len(lines)


def test_no_class_is_longer_than_200_lines() -> None:
    long = []
    for path in sorted(PROCESSOR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno and node.end_lineno - node.lineno + 1 > 200:
                long.append(f"{path.relative_to(PROCESSOR)}: {node.name}")
    assert long == []

