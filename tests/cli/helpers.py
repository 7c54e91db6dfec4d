"""Running the real console script and checking the one-line usage errors (shared by the CLI tests)."""

import subprocess

import torch

from nnatlas.cli.main import main


def run(exe, *args, cwd=None, timeout=600, env=None):
    return subprocess.run([*exe, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def assert_usage_error(proc):
    """Exit code 2, exactly one non-empty line on stderr, no traceback; returns that line."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def main_in_process(argv):
    """``nnatlas ARGV`` in this process; the torch thread count a run sets is restored after it."""
    threads = torch.get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def usage_error_in_process(argv, capsys):
    """``nnatlas ARGV`` in this process must be a usage error: exit code 2 and one line on stderr, no
    traceback; returns that line (the subprocess variant is :func:`assert_usage_error`)."""
    capsys.readouterr()
    code = main_in_process(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]
