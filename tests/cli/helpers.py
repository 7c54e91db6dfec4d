"""Running the real console script and checking the one-line usage errors (shared by the CLI tests)."""

import subprocess


def run(exe, *args, cwd=None, timeout=600, env=None):
    return subprocess.run([*exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def assert_usage_error(proc):
    """Exit code 2, exactly one non-empty line on stderr, no traceback; returns that line."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]
