"""The engine refuses a number outside its option's range (the range the Processing dialogs take) with a clear
error naming the flag, before any work and with no output: ``suggest-areas --block-size 0`` died with an internal
error ("range() arg 3 must not be zero"), a sample seed of 2**32 was taken although the dialog's integers end at
2**31 - 1."""
import json
import subprocess

import pytest


def engine(engine_python, repo_root, *args):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, [e for e in events if e["event"] == "error"]


@pytest.mark.parametrize("command, flag, value, limit", [
    ("suggest-areas", "--block-size", 0, "at least 16 and at most 65536"),
    ("suggest-areas", "--count", 20_000, "at least 1 and at most 10000"),
    ("create-sample", "--seed", 2**32, "at least 0 and at most 2147483647"),
    ("create-sample", "--size", 10**9, "at least 1 and at most 1000000"),
])
def test_a_number_out_of_range_is_a_clear_bad_input(command, flag, value, limit, shared_data, tmp_path,
                                                    engine_python, repo_root):
    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"  # uint8: a classified map, and read as an uncertainty
    inputs = ["--uncertainty", nlcd] if command == "suggest-areas" else ["--classified", nlcd, "--size", 40]
    code, errors = engine(engine_python, repo_root, command, *inputs, "--output", tmp_path / "out.gpkg",
                          f"{flag}={value}")
    assert code == 2 and len(errors) == 1 and errors[0]["kind"] == "bad_input", errors
    assert errors[0]["message"] == f"{flag} must be {limit} (got {value}): give a value in that range."
    assert not list(tmp_path.iterdir())
