"""``emolens batch``: inputs, the Parquet dataset, equality with ``emolens analyze``, and real Ray runs —
embedded on the loopback, and on a two-node cluster on this machine with a node killed mid-run, a
driver killed mid-run (resume), and a corrupt file in the archive."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")
import pyarrow.parquet as pq  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from emolens.apps.batch import isolation  # noqa: E402
from emolens.apps.batch.analysis import BatchOptions, analyze_item, frame_step, merge  # noqa: E402
from emolens.apps.batch.inputs import WorkItem, expand, make_source, plan  # noqa: E402
from emolens.apps.batch.store import BatchFolder  # noqa: E402
from emolens.apps.cli import app  # noqa: E402
from tests.conftest import SHARED  # noqa: E402
from tests.raytools import (  # noqa: E402
    EMOLENS,
    HEAD_IP,
    NODE_IP,
    LocalCluster,
    make_archive,
    our_processes,
    ray_env,
    short_temp_dir,
)

MEDIA = SHARED / "media"
FPS = "10"  # sampled frames per second of video in the Ray runs
VOLATILE = ["elapsed_s", "node", "peak_rss_mb"]  # where and how fast a source ran
GOOD = 12 + 6 + 8  # photos, clips of the 72-frame and the 98-frame video (OpenCV reads 96 of its frames)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few dozen real sources (12 photos, clips of 12 frames cut from the shared videos) and two
    corrupt files."""
    if not MEDIA.is_dir():
        pytest.skip(f"{MEDIA} not found: the tests read real media from ../shared")
    root = tmp_path_factory.mktemp("archive")
    assert len(make_archive(root, MEDIA, frames_per_clip=12)) == GOOD
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    return root


def _batch(args: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
    return subprocess.Popen([EMOLENS, "batch", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kw)


def _finish(proc: subprocess.Popen, timeout_s: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout_s)
    return out


def _ledger(out: Path) -> list[dict]:
    """The ledger's whole lines (one being written may be cut short)."""
    path = out / "ledger.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    """The three tables, read as any Parquet reader would (no emolens), in a stable order."""
    keys = {"faces": ["source", "frame", "face_id"], "tracks": ["source", "face_id"], "sources": ["source"]}
    return {name: pd.read_parquet(out / name).sort_values(k).reset_index(drop=True) for name, k in keys.items()}


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short temp folder for Ray's sessions (also how the test finds Ray's processes)."""
    path = short_temp_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The archive analysed by Ray embedded on this machine (two workers): the single-machine result."""
    tmp = short_temp_dir()
    out = tmp_path_factory.mktemp("embedded") / "out"
    try:
        proc = _batch([str(archive), "--out", str(out), "--fps", FPS, "--workers", "2"], ray_env(tmp))
        text = _finish(proc)
        assert proc.returncode == 1, text  # the two corrupt files fail; the run goes on
        assert f"{GOOD} analysed, 2 failed" in text, text
        assert not our_processes(str(tmp)), "the embedded Ray left processes behind"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    yield out


def test_inputs_folders_globs_manifests(archive: Path, tmp_path: Path) -> None:
    photos = sorted(archive.glob("day0/*.jpg"))
    (tmp_path / "list.txt").write_text(f"# photos\n{photos[0]}\n\n{photos[1].relative_to(archive)}\n")
    shutil.copy(tmp_path / "list.txt", archive / "list.txt")
    with open(tmp_path / "list.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "note"], [photos[2], "x"], [tmp_path / "gone.mp4", "missing"]])
    pd.DataFrame({"path": [str(photos[0])]}).to_parquet(tmp_path / "list.parquet")
    sources, errors = expand([archive / "list.txt", tmp_path / "list.csv", tmp_path / "list.parquet",
                              str(archive / "clips" / "*-0.mp4"), archive / "day1", tmp_path / "nothing-here"])
    names = [Path(s.path).name for s in sources]
    assert names[:4] == [photos[0].name, photos[1].name, photos[2].name, "gone.mp4"]  # each once, in order
    assert {"pyfeat_no_face-0.mp4", "pyfeat_single_face-0.mp4"} <= set(names)
    assert len([n for n in names if n.endswith("-1.jpg")]) == 3  # the folder day1
    assert sources[3].size == -1  # listed but missing: a source that fails, with its reason
    assert [e for _, e in errors] == [f"{tmp_path / 'nothing-here'}: no such file, folder or pattern"]
    (archive / "list.txt").unlink()


def test_a_file_name_that_is_not_utf8_is_recorded(tmp_path: Path) -> None:
    """Undecodable bytes in a name are escaped in the tables (Parquet strings are UTF-8), not a crash."""
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.jpg")
    shutil.copy(MEDIA / "deepface_couple.jpg", odd)
    (source,), _ = expand([tmp_path])
    options = BatchOptions()
    recognizer = options.recognizer()
    folder = BatchFolder(tmp_path / "out", {"options": options.to_dict(), "classes": list(recognizer.classes)})
    video, total = merge([analyze_item(recognizer, WorkItem(source), options)], recognizer.classes)
    assert folder.save(source, video, total)["status"] == "done"
    folder.close()
    assert pd.read_parquet(tmp_path / "out" / "faces")["source"].str.endswith("caf\\xe9.jpg").all()


def test_long_video_split_into_ranges_gives_the_same_frames() -> None:
    """Fewer sources than workers: a video is cut into frame ranges aligned to the sampling step;
    the merged parts hold the same sampled frames as the whole, face ids renumbered."""
    source = make_source(MEDIA / "pyfeat_single_face.mp4")  # 72 frames at 30 fps
    step = frame_step(30.0, 10)
    items = plan([source], 4, {source.source_id: (72, step)})
    assert len(items) == 1  # under 10 s: not worth splitting
    import emolens.apps.batch.inputs as inputs

    inputs.MIN_RANGE_S, before = 0.5, inputs.MIN_RANGE_S
    try:
        items = plan([source], 3, {source.source_id: (72, step)})
    finally:
        inputs.MIN_RANGE_S = before
    assert [(i.start, i.stop) for i in items] == [(0, 24), (24, 48), (48, None)]
    options = BatchOptions(fps=10)
    recognizer = options.recognizer()
    whole = analyze_item(recognizer, WorkItem(source), options)
    video, total = merge([analyze_item(recognizer, i, options) for i in reversed(items)], recognizer.classes)
    assert total.error is None and total.frames == whole.frames == 72 and total.sampled == whole.sampled == 24
    assert [r["frame"] for r in video.timeline] == [r["frame"] for r in whole.rows] == list(range(0, 72, 3))
    assert {r["face_id"] for r in video.timeline} == {0, 1, 2}  # one face, tracked afresh in each range


def test_results_equal_emolens_analyze(tmp_path: Path) -> None:
    """The same file and options give the rows ``emolens analyze`` writes to its CSV."""
    video, photo = MEDIA / "pyfeat_single_face.mp4", MEDIA / "pyfeat_multi_face.jpg"
    result = CliRunner().invoke(app, ["analyze", str(video), str(photo), "--csv", str(tmp_path / "a.csv")])
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(tmp_path / "a.csv")
    options = BatchOptions()
    recognizer = options.recognizer()
    folder = BatchFolder(tmp_path / "batch", {"options": options.to_dict(), "classes": list(recognizer.classes)})
    for path in (video, photo):
        source = make_source(path)
        merged, total = merge([analyze_item(recognizer, WorkItem(source), options)], recognizer.classes)
        folder.save(source, merged, total)
    folder.close()
    got = pq.read_table(tmp_path / "batch" / "faces").to_pandas()
    for path in (video, photo):
        want = expected[expected["source"] == str(path)].reset_index(drop=True)
        # make_source names a file by its absolute path, links not followed (../shared may be one)
        have = got[got["source"] == os.path.abspath(path)].sort_values(["frame", "face_id"]).reset_index(drop=True)
        assert len(want) == len(have) > 0
        assert (want["emotion"] == have["emotion"]).all()
        columns = ["frame", "face_id", "x1", "y1", "x2", "y2", "score", "confidence",
                   *(f"p_{c}" for c in recognizer.classes)]
        pd.testing.assert_frame_equal(want[columns].astype(float), have[columns].astype(float), atol=1e-3, rtol=0)
    assert pd.read_parquet(tmp_path / "batch" / "sources")["status"].tolist() == ["done", "done"]


def test_embedded_run_on_the_loopback(reference: Path, archive: Path) -> None:
    tables = _tables(reference)
    sources = tables["sources"]
    assert len(sources) == GOOD + 2 and sources["source"].is_unique
    assert set(sources["node"].dropna()) == {HEAD_IP}  # the embedded Ray's node is a loopback address
    failed = sources[sources["status"] == "failed"]
    assert sorted(Path(s).name for s in failed["source"]) == ["broken.jpg", "broken.mp4"]
    assert all(str(archive) in e for e in failed["error"])  # the error names the file
    done = sources[sources["status"] == "done"]
    clips = done[done["kind"] == "video"]
    steps = [frame_step(fps, float(FPS)) for fps in clips["fps"]]  # 3 at 30 fps, 2 at 23.7 fps
    assert set(steps) == {2, 3}
    assert clips["sampled_frames"].tolist() == [len(range(0, n, k)) for n, k in zip(clips["frames"], steps)]
    faces = tables["faces"]
    assert set(faces["source"]) <= set(done["source"])
    per_source = faces.groupby("source").size()
    assert (per_source == done.set_index("source").loc[per_source.index, "faces"]).all()
    assert tables["tracks"].groupby("source").size().sum() == done["tracks"].sum()
    assert json.loads((reference / "batch.json").read_text())["options"]["fps"] == float(FPS)


def test_rerun_skips_finished_sources_and_refuses_other_options(reference: Path, archive: Path, tmp_path: Path,
                                                                ray_tmp: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    env = ray_env(ray_tmp)
    proc = _batch([str(archive), "--out", str(out), "--fps", FPS, "--workers", "2"], env)
    text = _finish(proc)
    assert f"0 analysed, 2 failed, {GOOD} already done" in text, text  # only the failed ones are tried again
    proc = _batch([str(archive), "--out", str(out), "--fps", "5"], env)
    text = _finish(proc)
    assert proc.returncode == 2 and "holds a batch made with other settings" in text, text
    # Ctrl-C: one line saying how to go on, exit 130, the embedded Ray stopped, the folder resumable.
    out = tmp_path / "interrupted"
    proc = _batch([str(archive), "--out", str(out), "--fps", FPS, "--workers", "2"], env)
    _wait_for_ledger(out, proc, lambda done: len(done) >= 2)
    proc.send_signal(signal.SIGINT)
    text = _finish(proc)
    assert proc.returncode == 130 and "rerun the same command to go on" in text, text
    assert "Traceback" not in text
    done, saved = {e["source_id"] for e in _ledger(out)}, {p.stem for p in (out / "sources").iterdir()}
    assert done <= saved and len(saved - done) <= 1  # at most the one cut between its files and its ledger line
    assert not our_processes(str(ray_tmp))


def _wait_for_ledger(out: Path, proc: subprocess.Popen, ready, timeout_s: float = 240) -> list[dict]:
    """The ledger once ``ready(entries)`` holds (the batch still running)."""
    deadline = time.monotonic() + timeout_s
    while not ready(entries := _ledger(out)):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the batch made no progress"
        time.sleep(0.1)
    return entries


def _assert_same_dataset(out: Path, reference: Path) -> None:
    """Every source exactly once, and the same rows as the single-machine run."""
    got, want = _tables(out), _tables(reference)
    assert not [p for t in ("faces", "tracks", "sources") for p in (out / t).iterdir() if not p.name.endswith(".parquet")]
    assert got["sources"]["source"].is_unique and len(got["sources"]) == GOOD + 2
    for name in ("faces", "tracks"):
        pd.testing.assert_frame_equal(got[name], want[name])
    pd.testing.assert_frame_equal(got["sources"].drop(columns=VOLATILE), want["sources"].drop(columns=VOLATILE))


@pytest.mark.slow
def test_two_node_cluster_survives_a_dead_node_and_a_killed_driver(reference: Path, archive: Path,
                                                                    tmp_path: Path, ray_tmp: Path) -> None:
    cluster = LocalCluster(ray_tmp)  # head 127.0.0.2 and a node 127.0.0.3, one CPU each
    try:
        # 1. A worker node dies mid-run: its sources are retried on the head, none lost, none twice.
        out = tmp_path / "node-killed"
        args = ["--out", str(out), "--fps", FPS, "--address", cluster.address, "--workers", "2"]
        proc = _batch([str(archive), *args], cluster.env)
        # Once the second node has finished a source (so it is at work on the next), it dies.
        entries = _wait_for_ledger(out, proc, lambda done: NODE_IP in {e["node"] for e in done})
        cluster.kill_node()
        assert len(entries) < GOOD  # mid-run
        text = _finish(proc)
        assert f"{GOOD} analysed, 2 failed" in text, text
        _assert_same_dataset(out, reference)
        # 2. The driver is killed mid-run; the same command resumes where the ledger stops.
        out = tmp_path / "driver-killed"
        args[1] = str(out)
        proc = _batch([str(archive), *args], cluster.env)
        _wait_for_ledger(out, proc, lambda done: len(done) >= 3)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        done = {e["source_id"] for e in _ledger(out) if e["status"] == "done"}
        assert 3 <= len(_ledger(out)) < GOOD + 2
        proc = _batch([str(archive), *args], cluster.env)
        text = _finish(proc)
        assert f"{GOOD - len(done)} analysed, 2 failed, {len(done)} already done" in text, text
        _assert_same_dataset(out, reference)
    finally:
        cluster.stop()
    assert not our_processes(str(ray_tmp)), "the test cluster left processes behind"


EMBEDDED_PROBE = """
import json, os, subprocess, sys
import ray
from ray._raylet import AuthenticationMode, get_authentication_mode
from emolens.apps.batch.cluster import connect, disconnect
connect(None, 1)
node = ray._private.worker.global_worker.node
pids = {p.process.pid for procs in node.all_processes.values() for p in procs} | {os.getpid()}
lines = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
listening = [line.split()[3] for line in lines if any(f"pid={p}," in line for p in pids)]
others = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
joined = None
if others:  # a client on the network, without the token, at the head's port on this machine's address
    port = node.gcs_address.rsplit(":", 1)[1]
    code = f"import ray; ray.init(address='{others[0]}:{port}', logging_level='ERROR')"
    client = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                            capture_output=True, text=True, timeout=120)
    joined = "joined" if client.returncode == 0 else "refused" if "auth" in client.stderr.lower() else client.stderr
print(json.dumps({"token": get_authentication_mode() == AuthenticationMode.TOKEN, "ip": node.node_ip_address,
                  "listening": listening, "joined": joined}))
disconnect()
"""


def _listening(pid: int) -> set[int]:
    """The TCP ports listening in the network namespace of process ``pid`` (from /proc, IPv4 and IPv6)."""
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_embedded_batch_keeps_every_ray_port_in_a_private_network_namespace(archive: Path, tmp_path: Path,
                                                                           ray_tmp: Path) -> None:
    """Ray 2.60 listens on every interface whatever the node address, so the embedded batch runs its
    driver and Ray in a user + network namespace of their own: Ray's processes see only a loopback
    interface, and none of their ports answers from this machine's own network namespace."""
    if not isolation.available():
        pytest.skip("this system refuses unprivileged user namespaces (the batch then runs with Ray's tokens)")
    out = tmp_path / "out"
    proc = _batch([str(archive), "--out", str(out), "--fps", FPS, "--workers", "2"], ray_env(ray_tmp))
    try:
        _wait_for_ledger(out, proc, lambda done: len(done) >= 1)
        ours, found = os.readlink("/proc/self/ns/net"), {}
        for pid in our_processes(str(ray_tmp)):  # gcs_server and raylet name the session folder
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                found[name] = (os.readlink(f"/proc/{pid}/ns/net"), _listening(pid),
                               [line.split(":")[0].strip() for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]])
            except OSError:
                continue
    finally:
        text = _finish(proc)
    assert f"{GOOD} analysed, 2 failed" in text and "note:" not in text, text
    assert {"gcs_server", "raylet"} <= set(found), found
    ports = set()
    for name, (netns, listening, interfaces) in found.items():
        assert netns != ours and interfaces == ["lo"], (name, netns, interfaces)
        ports |= listening
    assert ports
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()[:1]
    for host in [HEAD_IP, *addresses]:  # Ray's node address, and this machine's address on its network
        for port in ports:
            with pytest.raises(OSError):
                socket.create_connection((host, port), timeout=2).close()
    assert not our_processes(str(ray_tmp))


def test_embedded_driver_stops_cleanly_when_the_command_is_killed(archive: Path, tmp_path: Path,
                                                                  ray_tmp: Path) -> None:
    """SIGKILL on ``emolens batch`` (a crash, an OOM kill): its driver in the namespace gets SIGINT,
    stops its Ray and keeps the ledger; the same command resumes."""
    if not isolation.available():
        pytest.skip("this system refuses unprivileged user namespaces")
    out = tmp_path / "out"
    args = [str(archive), "--out", str(out), "--fps", FPS, "--workers", "2"]
    proc = _batch(args, ray_env(ray_tmp))
    _wait_for_ledger(out, proc, lambda done: len(done) >= 2)
    proc.kill()  # this process only; the driver is in a process group of its own
    proc.communicate()
    deadline = time.monotonic() + 120
    while our_processes(str(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not our_processes(str(ray_tmp)), "the driver or its Ray outlived the killed command"
    assert len(_ledger(out)) < GOOD + 2  # stopped mid-run, not carried on to the end
    done = {e["source_id"] for e in _ledger(out) if e["status"] == "done"}
    text = _finish(_batch(args, ray_env(ray_tmp)))
    assert f"{GOOD - len(done)} analysed, 2 failed, {len(done)} already done" in text, text


def test_ray_without_a_namespace_is_on_the_loopback_without_dashboard_and_refuses_clients_without_its_token(
        ray_tmp: Path) -> None:
    """Where the system refuses a namespace, the embedded Ray runs in this network namespace, whose
    gRPC servers Ray 2.60 binds to every interface (measured): it runs on 127.0.0.2, starts no
    dashboard, client server or other HTTP listener, and keeps token authentication on, so a client
    from the network without the token is refused."""
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to list listening sockets")
    env = {k: v for k, v in ray_env(ray_tmp).items() if k != "RAY_AUTH_MODE"}  # the default a user gets
    done = subprocess.run([sys.executable, "-c", EMBEDDED_PROBE], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["token"] and probe["ip"] == HEAD_IP
    ports = {int(a.rsplit(":", 1)[1]) for a in probe["listening"]}
    assert ports and not ports & {8265, 10001, 52365}  # dashboard, Ray client server, dashboard agent
    assert probe["joined"] in (None, "refused"), probe["joined"]
    assert not our_processes(str(ray_tmp))
