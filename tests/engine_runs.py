"""Running the engine's ``train`` command in a subprocess, as the QGIS side does, for the engine tests."""
import json
import signal
import subprocess


def command(engine_python, *args):
    return [engine_python, "-m", "landcover_plugin.core.engine", "train", *map(str, args)]


def of_type(events, name):
    return [e for e in events if e["event"] == name]


def cancelled_run(engine_python, repo_root, *args, epochs: int = 2, when=None):
    """Start ``train`` and send SIGTERM to the engine alone (what the QGIS side does on cancel) once ``epochs``
    metric events arrived, or once ``when(events)`` is true; ``(exit code, events, stderr)``."""
    when = when or (lambda events: len(of_type(events, "metric")) == epochs)
    proc = subprocess.Popen(command(engine_python, *args), cwd=repo_root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    events = []
    try:
        for line in proc.stdout:
            events.append(json.loads(line))
            if when(events):
                proc.send_signal(signal.SIGTERM)
                break
        events += [json.loads(line) for line in proc.stdout]
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, events, proc.stderr.read()
