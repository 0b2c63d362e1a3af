"""classify on Dask (``--dask local:2``) of a mosaic VRT of three GeoTIFF files cut from the real Zion image:
the map equals the single-process run's pixel for pixel; a killed shard is retried; a shard that keeps failing
is named; a rerun after a cancel resumes; bad addresses are clear errors. The engine runs as a user runs it
(a subprocess), starting a real LocalCluster of two worker processes."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from classify_models import card_for, export, tiny_net
from osgeo import gdal

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.shards import plan_shards
from landcover_plugin.core.classify.tiling import tile_offsets
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.map_record import read_record
from landcover_plugin.core.raster_classes import embedded_classes

ENGINE = [sys.executable, "-m", "landcover_plugin.core.engine", "classify"]


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory, shared_data, model):
    """A VRT over three GeoTIFF files (row bands of Zion, uneven), and the single-process map of it."""
    folder = tmp_path_factory.mktemp("dask_mosaic")
    image = str(shared_data / "zion" / "landsat8_2015_b2345.tif")
    parts = []
    for i, (row, rows) in enumerate(((0, 500), (500, 450), (950, 478))):
        parts.append(str(folder / f"part{i}.tif"))
        gdal.Translate(parts[-1], image, srcWin=[0, row, 1128, rows])
    vrt = str(folder / "mosaic.vrt")
    gdal.BuildVRT(vrt, parts)
    single = classify_raster(ClassifyOptions(vrt, model, folder / "single.tif", batch_size=4))
    return {"vrt": vrt, "single": single, "folder": folder, "model": model}


def engine(*args, env=None, timeout=300):
    completed = subprocess.run(ENGINE + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                               env=dict(os.environ, **(env or {})))
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    return completed.returncode, events, completed.stderr


def result_of(events):
    return next(e["outputs"] for e in events if e["event"] == "result")


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src.transform, src.crs, src.nodata


def assert_same_map(path, single_path):
    labels, _, transform, crs, nodata = read(path)
    expected, _, transform0, crs0, nodata0 = read(single_path)
    assert np.array_equal(labels, expected)
    assert (transform, crs, nodata) == (transform0, crs0, nodata0) and nodata == 0


def test_rows_of_a_whole_run_are_the_same_rows(mosaic, tmp_path):
    """The single-process classifier over a row range (a shard) gives exactly those rows of a whole run."""
    expected = read(mosaic["single"]["OUTPUT"])[0]
    for r0, r1 in ((0, 37), (37, 701), (701, 1428)):
        out = tmp_path / f"rows_{r0}.tif"
        result = classify_raster(ClassifyOptions(mosaic["vrt"], mosaic["model"], out, rows=[r0, r1], batch_size=3))
        labels, profile, transform, _, _ = read(out)
        assert labels.shape == (r1 - r0, 1128) and result["tiles_run"] <= result["tiles"]
        assert np.array_equal(labels, expected[r0:r1])
        assert transform.f == read(mosaic["single"]["OUTPUT"])[2].f - 30.0 * r0


def test_local_cluster_map_equals_the_single_process_map(mosaic):
    output = mosaic["folder"] / "dask.tif"
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", mosaic["model"], "--output", output,
                                  "--dask", "local:2", "--dask-shard-rows", "8")
    assert code == 0, stderr[-3000:]
    result = result_of(events)
    assert result["OUTPUT"] == str(output) and result["WORKERS"] == 2 and result["shards"] == 4
    assert result["shards_run"] == 4 and result["shards_reused"] == 0
    assert result["softmax_applied"] is False  # the model gives probabilities (a logits model: below)
    single = mosaic["single"]["OUTPUT"]
    assert_same_map(output, single)  # the COG
    assert_same_map(result["VRT"], single)  # the VRT over the shards
    assert gdal.Info(str(output), format="json")["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert embedded_classes(output) == embedded_classes(single)  # classes, colours, category names
    assert embedded_classes(result["VRT"])[0] == embedded_classes(single)[0]
    with rasterio.open(output) as cog, rasterio.open(single) as one:
        assert cog.overviews(1) == one.overviews(1) and cog.block_shapes == one.block_shapes
    assert open(result["QML"]).read() == open(mosaic["single"]["QML"]).read()
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[-1]["message"] == "done" and progress[-1]["fraction"] == 1.0
    assert all(a["fraction"] <= b["fraction"] for a, b in zip(progress, progress[1:]))
    shards = sorted(p.name for p in (mosaic["folder"] / "dask.shards").glob("shard_*.tif"))
    assert shards == [f"shard_{i:05d}.tif" for i in range(4)]


def test_the_shards_weigh_the_classes_by_the_card_s_shares_and_the_run_says_so(mosaic, shared_data):
    """A model trained on polygons carries the scene's class shares: every shard weighs by them, as a single run
    does, and the run's own log (the shards' logs stay on the workers) says so once, with the training raster."""
    folder = mosaic["folder"]
    card = card_for(["water", "forest", "shrubland"], mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500],
                    tile=64, input_dtype="uint16", resolution=[30.0, 30.0])
    card["class_shares"] = {"weights": [1.0, 0.05, 0.05], "scene_shares": [0.9, 0.05, 0.05],
                            "learned_shares": [1 / 3] * 3, "class_ids": [1, 2, 3],
                            "source": str(shared_data / "zion" / "landsat8_2015_b2345.tif")}
    card["heldout"] = {"overall_accuracy": 0.8, "mean_iou": 0.5, "classes_weighed": True, "method": "test",
                       "unweighed": {"overall_accuracy": 0.7, "mean_iou": 0.4}}
    weighed = export(tiny_net(4, 3), folder / "shares.onnx", 4, 64, metadata_props(card))
    single = classify_raster(ClassifyOptions(mosaic["vrt"], weighed, folder / "shares_single.tif", batch_size=4))
    unweighed = read(mosaic["single"]["OUTPUT"])[0]
    assert (read(single["OUTPUT"])[0] != unweighed).mean() > 0.01  # the weights move pixels
    output = folder / "shares_dask.tif"
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", weighed, "--output", output,
                                  "--dask", "local:2", "--dask-shard-rows", "8")
    assert code == 0, stderr[-3000:]
    assert_same_map(output, single["OUTPUT"])
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert sum(m.startswith("Classes weighed by the scene's shares") for m in logs) == 1
    assert sum("were estimated on the training raster, landsat8_2015_b2345.tif" in m for m in logs) == 1
    # the map records the model and the weighed map's estimate as a single run's does, and the log says it once
    record = read_record(output)
    assert record == read_record(single["OUTPUT"]) and record["estimate"]["overall_accuracy"] == 0.8
    assert record["same_raster"] is False and record["raster"] == Path(mosaic["vrt"]).name
    assert sum(m.startswith("The trainer estimated this model's maps at overall accuracy 80%") for m in logs) == 1


def test_the_run_warns_of_bands_unlike_the_training_data_s_as_a_single_run_does(mosaic, tmp_path):
    """The shards' logs stay on the workers, so the pre-flight check of the bands against the card's statistics is
    the run's own: it warns as a single run does, once (a model trained on reflectance, given Zion's numbers)."""
    card = card_for(["water", "forest", "shrubland"], mean=[0.09, 0.08, 0.075, 0.15], std=[0.01, 0.012, 0.015, 0.025],
                    tile=64, input_dtype="float32", resolution=[30.0, 30.0])
    reflectance = export(tiny_net(4, 3), tmp_path / "reflectance.onnx", 4, 64, metadata_props(card))
    single = RecordingEvents()
    classify_raster(ClassifyOptions(mosaic["vrt"], reflectance, tmp_path / "single.tif", batch_size=4), single)
    expected = [e["message"] for e in single.of_type("log") if e["level"] == "warning"]
    assert any("scaling" in m for m in expected)
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", reflectance, "--output", tmp_path / "d.tif",
                                  "--dask", "local:2", "--dask-shard-rows", "8")
    assert code == 0, stderr[-3000:]
    warned = [e["message"] for e in events if e["event"] == "log" and e["level"] == "warning"]
    assert [m for m in warned if m in expected] == expected


def test_a_model_giving_logits_is_said_once_as_a_single_run_says_it(mosaic, tmp_path):
    """A foreign model that outputs logits gets a softmax in every shard; the shards' logs stay on the workers, so
    the run's own process says it, once, with the single run's words."""
    card = card_for(["water", "forest", "shrubland"], mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500],
                    tile=64, input_dtype="uint16", resolution=[30.0, 30.0])
    logits = export(tiny_net(4, 3, softmax=False), tmp_path / "logits.onnx", 4, 64, metadata_props(card))
    single = RecordingEvents()
    expected = classify_raster(ClassifyOptions(mosaic["vrt"], logits, tmp_path / "single.tif", batch_size=4), single)
    said = [e["message"] for e in single.of_type("log") if "not class probabilities" in e["message"]]
    assert len(said) == 1 and expected["softmax_applied"]
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", logits, "--output", tmp_path / "d.tif",
                                  "--dask", "local:2", "--dask-shard-rows", "8")
    assert code == 0, stderr[-3000:]
    assert_same_map(tmp_path / "d.tif", expected["OUTPUT"])
    assert [e["message"] for e in events if e["event"] == "log" and "not class probabilities" in e["message"]] == said
    assert result_of(events)["softmax_applied"] is True


def test_a_killed_shard_is_retried_and_the_map_is_unchanged(mosaic):
    output = mosaic["folder"] / "killed.vrt"
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", mosaic["model"], "--output", output,
                                  "--dask", "local:2", "--dask-shard-rows", "8",
                                  env={"LANDCOVER_TEST_FAIL_SHARD": "1"})
    assert code == 0, stderr[-3000:]
    retried = [e["message"] for e in events if e.get("level") == "warning" and "retrying it once" in e["message"]]
    # the worker that died held shard 1, and maybe the next shard queued on it: each is retried once
    assert any("shard_00001 (rows 384..768)" in message for message in retried)
    assert all("KilledWorker" in message for message in retried)
    assert len({message.split(" failed")[0] for message in retried}) == len(retried) <= 2
    result = result_of(events)
    assert result["OUTPUT"] == str(output) and "COG" not in result  # a .vrt output: no COG unless --cog
    assert_same_map(output, mosaic["single"]["OUTPUT"])


def test_a_shard_failing_twice_is_reported_by_name(mosaic):
    output = mosaic["folder"] / "failing.vrt"
    code, events, _ = engine("--raster", mosaic["vrt"], "--model", mosaic["model"], "--output", output,
                             "--dask", "local:2", "--dask-shard-rows", "8",
                             env={"LANDCOVER_TEST_FAIL_SHARD": "2:every"})
    assert code == 1
    error = events[-1]
    assert error["event"] == "error" and "Shard shard_00002 (rows 768..1152) failed twice" in error["message"]
    assert "run the same command again to resume" in error["message"]
    assert not output.exists()


def test_a_rerun_after_a_cancel_resumes(mosaic):
    output = mosaic["folder"] / "resumed.tif"
    args = ENGINE + ["--raster", mosaic["vrt"], "--model", str(mosaic["model"]), "--output", str(output),
                     "--dask", "local:2", "--dask-shard-rows", "1"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in process.stdout:
        lines.append(json.loads(line))
        done = re.match(r"shard (\d+)/", lines[-1].get("message", "")) if lines[-1]["event"] == "progress" else None
        if done and int(done.group(1)) >= 1:  # a shard is complete
            process.send_signal(signal.SIGTERM)  # what the QGIS side does on cancel
            break
    lines += [json.loads(line) for line in process.stdout]
    assert process.wait(timeout=120) == 4, lines[-3:]
    assert lines[-1]["event"] == "error" and lines[-1]["kind"] == "cancelled"
    assert "run the same command again to resume" in lines[-1]["message"]
    assert not output.exists()
    kept = len(list((mosaic["folder"] / "resumed.shards").glob("shard_*.json")))
    assert 1 <= kept < 30

    code, events, stderr = engine(*args[len(ENGINE):])
    assert code == 0, stderr[-3000:]
    result = result_of(events)
    assert result["shards_reused"] == kept and result["shards_run"] == 30 - kept
    assert any(e.get("message", "").startswith(f"Resuming: {kept} of 30 shards") for e in events)
    assert_same_map(output, mosaic["single"]["OUTPUT"])
    assert not [p.name for p in (mosaic["folder"] / "resumed.shards").iterdir() if "partial" in p.name]

    # a shard made by another model is never reused, even for the same output
    other = onnx.load(str(mosaic["model"]))
    other.doc_string = "another model file (another checksum)"
    onnx.save(other, str(mosaic["folder"] / "other.onnx"))
    code, events, stderr = engine(*args[len(ENGINE):], "--model", mosaic["folder"] / "other.onnx", "--overwrite")
    assert code == 0, stderr[-3000:]
    assert result_of(events)["shards_reused"] == 0 and result_of(events)["shards_run"] == 30
    assert any("were made with other settings" in e.get("message", "") for e in events)


@pytest.mark.parametrize("address, words", [
    ("tcp://127.0.0.1:9", "Cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    ("local:0", "asks for no workers"),
    ("my-cluster", "is not a Dask address"),
])
def test_a_bad_scheduler_address_is_a_clear_error(mosaic, tmp_path, address, words):
    code, events, _ = engine("--raster", mosaic["vrt"], "--model", mosaic["model"], "--output",
                             tmp_path / "x.tif", "--dask", address)
    assert code == 2
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    assert words in events[-1]["message"] and "local:N" in events[-1]["message"]


def test_shards_are_whole_tile_rows_a_whole_number_per_worker():
    row_offsets = tile_offsets(316_228, 256, 32)  # a 100-gigapixel square, 256 px tiles
    for workers, count in ((1, 4), (8, 32), (64, 64)):
        shards = plan_shards(row_offsets, 316_228, workers)
        assert len(shards) == count
        assert shards[0][0] == 0 and shards[-1][1] == 316_228
        assert all(a[1] == b[0] and b[0] in row_offsets for a, b in zip(shards, shards[1:]))
    assert len(plan_shards(tile_offsets(1428, 64, 16), 1428, 2, tile_rows=8)) == 4  # --dask-shard-rows 8


@pytest.fixture(scope="module")
def scheduler(mosaic):
    """A real ``dask scheduler`` (without this plugin on its path) and one ``dask worker`` that runs in its own
    mount namespace where the folder ``hidden`` is an empty tmpfs: a path this machine sees and the worker does
    not, as on a cluster without shared storage. Without ``unshare`` the worker sees everything."""
    hidden = mosaic["folder"] / "hidden"
    hidden.mkdir(exist_ok=True)
    (hidden / "m.onnx").write_bytes(open(mosaic["model"], "rb").read())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                cwd="/", **quiet)]
    worker = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"]
    isolated = subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0 \
        if shutil.which("unshare") else False
    if isolated:
        worker = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {hidden} && exec \"$@\"", "worker", *worker]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    started.append(subprocess.Popen(worker, cwd="/", env=env, **quiet))
    try:
        from distributed import Client
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=120)
        yield {"address": address, "hidden": hidden, "isolated": isolated}
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_scheduler_address_gives_the_same_map(mosaic, scheduler):
    output = mosaic["folder"] / "tcp.vrt"
    code, events, stderr = engine("--raster", mosaic["vrt"], "--model", mosaic["model"], "--output", output,
                                  "--dask", scheduler["address"], "--dask-shard-rows", "8")
    assert code == 0, stderr[-3000:]
    assert result_of(events)["WORKERS"] == 1
    assert any(f"Connected to the Dask scheduler at {scheduler['address']}: 1 worker" in e.get("message", "")
               for e in events)
    assert_same_map(output, mosaic["single"]["OUTPUT"])


def test_a_path_a_worker_cannot_see_is_named(mosaic, scheduler, tmp_path):
    if not scheduler["isolated"]:
        pytest.skip("needs 'unshare -m' (root) to hide a folder from the worker")
    model = scheduler["hidden"] / "m.onnx"
    code, events, _ = engine("--raster", mosaic["vrt"], "--model", model, "--output", tmp_path / "x.vrt",
                             "--dask", scheduler["address"])
    assert code == 2
    message = events[-1]["message"]
    assert events[-1]["kind"] == "bad_input" and "shared storage" in message
    assert f"cannot see model {model}" in message and "raster" not in message.split("cannot see")[1][:40]


def test_what_dask_does_not_do_is_refused_before_any_cluster_starts(mosaic, tmp_path):
    from landcover_plugin.core.errors import BadInputError

    vrt, model = mosaic["vrt"], mosaic["model"]
    with pytest.raises(BadInputError, match="--cog applies to Dask runs"):
        classify_raster(ClassifyOptions(vrt, model, tmp_path / "a.tif", cog=True))
    with pytest.raises(BadInputError, match="not made on Dask yet"):
        classify_raster(ClassifyOptions(vrt, model, tmp_path / "b.tif", dask="local:2", confidence=tmp_path / "c.tif"))
    with pytest.raises(BadInputError, match=r"must end in \.vrt .* or \.tif"):
        classify_raster(ClassifyOptions(vrt, model, tmp_path / "d.img", dask="local:2"))
    (tmp_path / "e.vrt").write_text("<VRTDataset/>")
    with pytest.raises(BadInputError, match="already exists"):
        classify_raster(ClassifyOptions(vrt, model, tmp_path / "e.vrt", dask="local:2"))
    assert not list(tmp_path.glob("*.shards"))


@pytest.fixture(params=["silent", "garbage"])
def not_a_scheduler(request):
    """A local TCP server that is not a Dask scheduler: one that accepts and never answers (another service
    waiting for its own protocol), one that answers bytes of another protocol (an HTTP error)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                peer, _ = server.accept()
            except OSError:  # the server closed: the test is over
                return
            held.append(peer)
            if request.param == "garbage":
                peer.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield request.param, f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for peer in held:
        peer.close()


def test_an_address_that_is_not_a_dask_scheduler_is_a_clear_error(zion_image, model, tmp_path, not_a_scheduler):
    """It hung for ever (silent peer: the connect timeout covers only the TCP connection) or said 'Ran out of
    memory' (the HTTP reply read as a frame length of 3 EiB)."""
    kind, address = not_a_scheduler
    tick = time.monotonic()
    code, events, stderr = engine("--raster", zion_image, "--model", model, "--output", tmp_path / "x.vrt",
                                  "--dask", address, timeout=60)
    assert time.monotonic() - tick < 25
    assert code == 2 and events[-1]["kind"] == "bad_input", stderr[-2000:]
    assert events[-1]["message"].startswith(f"{address} is not a Dask scheduler")
    assert "tcp://host:8786" in events[-1]["message"] and "local:N" in events[-1]["message"]
    said = {"silent": "it accepted the connection but did not answer in Dask's protocol within 10 s",
            "garbage": "it answered, but not in Dask's protocol)"}[kind]
    assert said in events[-1]["message"] and "memory" not in events[-1]["message"].lower()
    assert "Traceback" not in stderr and not list(tmp_path.iterdir())


def test_a_cancel_stops_a_connect_in_progress(zion_image, model, tmp_path):
    """SIGTERM (the QGIS side's cancel) while the engine waits for a peer that never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        args = ENGINE + ["--raster", str(zion_image), "--model", str(model), "--output", str(tmp_path / "x.vrt"),
                         "--dask", f"tcp://127.0.0.1:{server.getsockname()[1]}"]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            peer, _ = server.accept()  # the engine is connecting: the handshake waits for an answer
            with peer:
                time.sleep(1)
                process.send_signal(signal.SIGTERM)
                tick = time.monotonic()
                assert process.wait(timeout=10) == 4
                assert time.monotonic() - tick < 5
        finally:
            if process.poll() is None:  # deaf to the cancel (the bug): never leave it running
                process.kill()
    last = json.loads(process.stdout.read().splitlines()[-1])
    assert last["kind"] == "cancelled" and "while connecting to the Dask scheduler" in last["message"]
