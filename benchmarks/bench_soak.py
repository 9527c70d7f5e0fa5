"""Soak: `edgedet run` on the synthetic live source with tracking, a zone and a line, MQTT (a local mosquitto) and
the stream (a viewer connected) for 10,000 frames, against its peer, the same run with only --json.

    .venv/bin/python benchmarks/bench_soak.py [--frames 10000] [--source synthetic:30] [--model M.onnx] [--no-peer]

Reported for each run: resident memory (VmRSS of the `edgedet run` process) after warm-up and at the end (target:
flat within 10 MB) and its trend per 1000 frames, frames lost (frames asked for minus frames written, which
counts failed frames, plus the stale frames a live camera drops when the pipeline is slower than it), the frame
rate; for the full run also events generated (from its JSON lines) against events delivered (distinct messages a
subscriber received from the broker; target: all) and the frames the stream viewer received. The peer shows
what memory does without tracking, events and the stream, on the same machine in the same session.

Without --model the shipped checkpoint is exported to ONNX (fp32) with `edgedet export` into the work folder; it
detects the synthetic source's shapes, so tracks cross the line and enter the zone. Needs Debian's mosquitto
(`apt-get install mosquitto`) and paho-mqtt (`pip install 'edgedet[events]'`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
EDGEDET = [sys.executable, "-m", "edgedet"]
CAMERA = "soak"  # --camera-name of the full run: its topics are edgedet/soak/...
ZONE = "left:0,0,0.5,0,0.5,1,0,1"  # the frame's left half (fractions of the frame)
LINE = "middle:0.5,0,0.5,1"  # the vertical centre line
RSS_TARGET_MB = 10.0  # flat within this from after warm-up to the end
SAMPLE_SECONDS = 0.5  # RSS / progress sampling period


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames per run (default 10000)")
    parser.add_argument("--source", default="synthetic:30", help="synthetic:FPS (live, default synthetic:30) or "
                                                                  "synthetic (in order, as fast as it goes)")
    parser.add_argument("--model", help="model to run (default: the shipped checkpoint exported to ONNX)")
    parser.add_argument("--warmup", type=int, default=300, help="frames before the 'start' memory sample")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the --json-only peer run")
    parser.add_argument("--workdir", help="keep generated files here (default: a temporary folder)")
    args = parser.parse_args()
    if args.frames <= args.warmup:
        raise SystemExit(f"--frames ({args.frames}) must exceed --warmup ({args.warmup})")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        model = Path(args.model) if args.model else export_shipped_onnx(work)
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores; model {model.name}, source {args.source}, "
              f"{args.frames} frames, warm-up {args.warmup}, {args.threads} inference thread(s)", flush=True)
        full = soak_full(model, work, args)
        peer = soak_peer(model, work, args) if args.peer else None
    print_report(full, peer, args)
    return 0


# ------------------------------------------------------------------------------------------ the two runs


def base_command(model: Path, json_path: Path, args) -> List[str]:
    return [*EDGEDET, "run", "--model", str(model), "--source", args.source, "--max-frames", str(args.frames),
            "--threads", str(args.threads), "--json", str(json_path), "--log-every", "60"]


def soak_full(model: Path, work: Path, args) -> dict:
    """The run with --track, a zone, a line, --mqtt to a local broker and --stream with a viewer connected."""
    broker = Broker(work / "broker")
    counter = EventCounter(broker.port, CAMERA)
    stream_port = free_port()
    cmd = base_command(model, work / "full.jsonl", args) + [
        "--track", "--zone", ZONE, "--line", LINE, "--mqtt", f"127.0.0.1:{broker.port}", "--camera-name", CAMERA,
        "--stream", f"127.0.0.1:{stream_port}"]
    print("full run:", " ".join(cmd[2:]), flush=True)
    viewer = Viewer(f"http://127.0.0.1:{stream_port}/stream.mjpg")
    try:
        result = run_sampled(cmd, work / "full.jsonl", args, on_start=viewer.start)
        counter.settle()
    finally:
        viewer.stop()
        counter.close()
        broker.stop()
    result["events_generated"] = events_in_json_lines(work / "full.jsonl")
    result["events_delivered"] = counter.distinct()
    result["events_duplicates"] = counter.received - counter.distinct()
    result["viewer_frames"] = viewer.frames
    return result


def soak_peer(model: Path, work: Path, args) -> dict:
    """The same model, source and frames with --json only."""
    cmd = base_command(model, work / "peer.jsonl", args)
    print("peer run:", " ".join(cmd[2:]), flush=True)
    return run_sampled(cmd, work / "peer.jsonl", args)


def run_sampled(cmd: List[str], json_path: Path, args, on_start=None) -> dict:
    """Run `cmd`, sampling its RSS and the JSON lines written every SAMPLE_SECONDS; the figures of one run."""
    stdout, stderr = json_path.with_suffix(".out"), json_path.with_suffix(".err")
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        progress, samples, started = LineCounter(json_path), [], False
        while process.poll() is None:
            lines, rss = progress.lines(), rss_mb(process.pid)
            if rss is not None:
                samples.append((lines, rss))
            if not started and lines > 0 and on_start is not None:
                on_start()  # the stream is up once frames flow
                started = True
            time.sleep(SAMPLE_SECONDS)
    text, errors = stdout.read_text(), stderr.read_text()
    if process.returncode != 0:
        raise SystemExit(f"edgedet run failed ({process.returncode}):\n{errors[-3000:]}")
    return {**parse_summary(text, errors), **memory_figures(samples, args.warmup, args.frames),
            "written": progress.lines(), "asked": args.frames}


def memory_figures(samples: List[Tuple[int, float]], warmup: int, frames: int) -> dict:
    """RSS (MB) at the first sample past `warmup` frames and at the last one before the run's end, the peak, and
    a least-squares trend in MB per 1000 frames over the samples between."""
    steady = [(n, rss) for n, rss in samples if warmup <= n < frames]
    if len(steady) < 2:
        raise SystemExit(f"too few memory samples after warm-up ({len(steady)}); run more --frames")
    xs, ys = [n for n, _ in steady], [rss for _, rss in steady]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0
    return {"rss_start": ys[0], "rss_start_frame": xs[0], "rss_end": ys[-1], "rss_end_frame": xs[-1],
            "rss_peak": max(rss for _, rss in samples), "rss_trend": slope * 1000}


def parse_summary(stdout: str, stderr: str) -> dict:
    """Frames, FPS, failed and stale frames from `edgedet run`'s summary lines."""
    done = re.search(r"(\d+) frames in ([\d.]+) s = ([\d.]+) FPS, (\d+) failed", stdout)
    if not done:
        raise SystemExit(f"no summary line in the output of edgedet run:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    stale = re.search(r"dropped (\d+) stale frames", stdout)
    return {"frames": int(done.group(1)), "seconds": float(done.group(2)), "fps": float(done.group(3)),
            "failed": int(done.group(4)), "stale": int(stale.group(1)) if stale else 0}


def events_in_json_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as lines:
        return sum(len(json.loads(line).get("events", ())) for line in lines)


# ------------------------------------------------------------------------------------------ helpers


class Broker:
    """Debian's mosquitto on 127.0.0.1 at a free port, config and log in `folder`."""

    def __init__(self, folder: Path):
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK)
                                               else None)
        if binary is None:
            raise SystemExit("mosquitto not found: apt-get install mosquitto")
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                          f"log_dest file {folder}/mosquitto.log\nuser root\n")  # as root: keep root
        self.process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.perf_counter() + 10
        while not accepts(self.port):
            if time.perf_counter() > deadline or self.process.poll() is not None:
                raise SystemExit(f"mosquitto did not start; see {folder}/mosquitto.log")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class EventCounter:
    """A paho subscriber (QoS 1) counting the messages on edgedet/<camera>/events, and the distinct events
    among them (QoS 1 is at-least-once: a message re-sent after a lost acknowledgement arrives twice)."""

    def __init__(self, port: int, camera: str):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise SystemExit("the soak needs paho-mqtt: pip install 'edgedet[events]'") from None
        self.received = 0
        self._keys = set()
        self._last = time.perf_counter()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgedet-soak-counter")
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"edgedet/{camera}/events", qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the subscriber could not subscribe to the local broker")

    def _on_message(self, client, userdata, message) -> None:
        event = json.loads(message.payload)
        self._keys.add((event["frame"], event["track_id"], event["kind"], event["zone"]))
        self.received += 1
        self._last = time.perf_counter()

    def settle(self, quiet: float = 1.0, limit: float = 10.0) -> None:
        """Wait until no message arrived for `quiet` seconds (at most `limit`)."""
        deadline = time.perf_counter() + limit
        while time.perf_counter() - self._last < quiet and time.perf_counter() < deadline:
            time.sleep(0.1)

    def distinct(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Viewer:
    """A client reading the MJPEG stream for the whole run in a thread, counting the frames it receives."""

    def __init__(self, url: str):
        self.url = url
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as stream:
                    while not self._stop.is_set():
                        chunk = stream.read1(65536)
                        if not chunk:
                            break
                        self.frames += chunk.count(b"Content-Type: image/jpeg")
            except OSError:  # not up yet, or the run ended
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


class LineCounter:
    """Lines of a growing file, counted incrementally (only the new bytes are read at each call)."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._lines = 0

    def lines(self) -> int:
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        self._lines += chunk.count(b"\n")
        return self._lines


def rss_mb(pid: int) -> Optional[float]:
    """VmRSS of process `pid` in MB (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def cpu_model() -> str:
    """lscpu's model name (the machine the figures belong to)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "unknown CPU"
    match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


def export_shipped_onnx(work: Path) -> Path:
    """The shipped checkpoint as ONNX fp32 in work/exports (made once, reused with --workdir)."""
    out = work / "exports"
    existing = sorted(out.glob("*.onnx"))
    if existing:
        return existing[0]
    result = subprocess.run([*EDGEDET, "export", "shipped", "--format", "onnx", "--out", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    models = sorted(out.glob("*.onnx"))
    if result.returncode != 0 or not models:
        raise SystemExit(f"edgedet export failed:\n{result.stderr[-2000:]}")
    return models[0]


# ------------------------------------------------------------------------------------------ report


def print_report(full: dict, peer: Optional[dict], args) -> None:
    runs = [("track+zone+line+mqtt+stream", full)] + ([("peer: --json only", peer)] if peer else [])
    rows = [
        ("frames written / asked", lambda r: f"{r['written']} / {r['asked']}"),
        ("frames lost (asked - written)", lambda r: str(r["asked"] - r["written"])),
        ("frames failed", lambda r: str(r["failed"])),
        ("stale camera frames dropped", lambda r: str(r["stale"])),
        ("frame rate (FPS)", lambda r: f"{r['fps']:.1f}"),
        ("RSS after warm-up (MB)", lambda r: f"{r['rss_start']:.1f} @ frame {r['rss_start_frame']}"),
        ("RSS at end (MB)", lambda r: f"{r['rss_end']:.1f} @ frame {r['rss_end_frame']}"),
        ("RSS growth (MB)", lambda r: f"{r['rss_end'] - r['rss_start']:+.1f}"),
        ("RSS trend (MB / 1000 frames)", lambda r: f"{r['rss_trend']:+.2f}"),
        ("RSS peak (MB)", lambda r: f"{r['rss_peak']:.1f}"),
    ]
    print(f"\nsoak: {args.frames} frames of {args.source}")
    print(f"{'':<32}" + "".join(f"{name:>32}" for name, _ in runs))
    for label, cell in rows:
        print(f"{label:<32}" + "".join(f"{cell(run):>32}" for _, run in runs))
    growth = full["rss_end"] - full["rss_start"]
    print(f"\nmemory: {growth:+.1f} MB from frame {full['rss_start_frame']} to {full['rss_end_frame']} "
          f"(target within {RSS_TARGET_MB:g} MB: {'ok' if abs(growth) <= RSS_TARGET_MB else 'ABOVE TARGET'})")
    if peer:
        peer_growth = peer["rss_end"] - peer["rss_start"]
        print(f"        peer {peer_growth:+.1f} MB; full run's frame rate / peer's: {full['fps'] / peer['fps']:.2f}")
    generated, delivered = full["events_generated"], full["events_delivered"]
    print(f"events: {delivered} delivered of {generated} generated (target all: "
          f"{'ok' if delivered == generated else 'MISSING ' + str(generated - delivered)}); "
          f"{full['events_duplicates']} duplicates (QoS 1 re-sends)")
    print(f"viewer: {full['viewer_frames']} MJPEG frames received")


if __name__ == "__main__":
    sys.exit(main())
