"""Environment for tests that start Python subprocesses (the CLI, README commands, notebooks).

The subprocess must import the same qwen3moe as the test: the test's environment, with each
PYTHONPATH entry made absolute so that a subprocess started in another directory (tmp_path)
still finds a source checkout (PYTHONPATH=python) rather than some other installed copy."""
from __future__ import annotations

import os


def subprocess_env(**extra: str) -> dict[str, str]:
    """os.environ with absolute PYTHONPATH entries, plus `extra`."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    env.update(extra)
    return env
