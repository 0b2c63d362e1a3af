"""Probe finding on the engine process itself (issue 12 #13): it leaves no file unclosed."""
import subprocess
import sys


def test_the_engine_closes_its_event_stream(repo_root):
    done = subprocess.run([sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-m",
                           "landcover_plugin.core.engine", "selftest", "--seconds", "0.1"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"event": "result"' in done.stdout.splitlines()[-1]
    assert "ResourceWarning" not in done.stderr, done.stderr[-2000:]
