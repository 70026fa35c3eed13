#!/usr/bin/env python3
"""What the web view and MQTT cost the line (issue 17; a benchmark, not a test).

Runs `runtime run` on a replay of the embedded BSData test images (28 good, 1 pitting: 3 %
REJECT, as on a line where most parts are good) with the pinned small model,
once plain (web view and MQTT off) and once with both on while clients load it:
  - 20 clients, each polling /api/status and /api/live.jpg in a loop (the page's work),
  - 1 slow client that reads /api/live.jpg at 1 byte/s,
  - every event published to a real mosquitto broker (Debian package) on a loopback port.
Two measurements, each plain then loaded, repeated `--repeats` times:
  1. CPU: the runtime at 10 frames/s with a 10 frames/s live view for `--seconds`; the cost is the
     extra CPU time of the runtime process (utime + stime from /proc) per second of wall time, in
     % of one core. The clients' and the broker's own CPU are not counted (on the plant they run
     elsewhere).
  2. Throughput: the camera free-running (replay as fast as inference goes) for `--frames`
     frames; inspected frames/s from the run summary, plain vs loaded. The clients and the broker
     share this machine's cores here, so this is an upper bound on the effect.
Prints a Markdown table. Usage (after `source scripts/env.sh`, runtime built):
  python3 scripts/bench_web_mqtt.py --runtime target/release/runtime
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of `pid` in seconds (/proc/<pid>/stat fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay(work):
    """A line where most parts are good: the 28 good test images and 1 with pitting (3 % REJECT;
    each REJECT is drawn for the gallery, so the share matters)."""
    folder = os.path.join(work, "replay")
    os.makedirs(folder, exist_ok=True)
    test = os.path.join(ROOT, "data/bsdata/ball_screw/test")
    files = [os.path.join(test, "good", f) for f in sorted(os.listdir(os.path.join(test, "good")))]
    files.insert(len(files) // 2, os.path.join(test, "pitting", sorted(os.listdir(os.path.join(test, "pitting")))[0]))
    for i, f in enumerate(files):
        os.symlink(f, os.path.join(folder, f"{i:03d}{os.path.splitext(f)[1]}"))
    return folder


def config(work, *, fps, web_port, mqtt_port, overlays="none"):
    path = os.path.join(work, f"device-{fps}-{web_port}.toml")
    text = f"""[camera]
source = "replay"
replay_dir = "{os.path.join(work, 'replay')}"
replay_loop = true
fps = {fps}

[model]
path = "{os.path.join(ROOT, 'runtime/tests/fixtures/pinned/model.onnx')}"
workers = 1
threads = 1

[reject]
backend = "simulated"
delay_ms = 500

[output]
dir = "{os.path.join(work, 'out')}"
overlays = "{overlays}"

[logging]
events = true
"""
    if web_port:
        text += f'\n[web]\nenabled = true\nport = {web_port}\nlive_fps = 10\n'
    if mqtt_port:
        text += f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {mqtt_port}\ntopic_prefix = "bench/line"\n'
    with open(path, "w") as f:
        f.write(text)
    return path


def wait_port(port, deadline_s=30):
    end = time.time() + deadline_s
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port}")


class Clients:
    """20 polling clients and one that reads 1 byte/s."""

    def __init__(self, port, n=20):
        self.stop = threading.Event()
        self.requests = 0
        self.frames_seen = []  # per client: distinct live frame ids it got
        self.threads = [threading.Thread(target=self.poll, args=(port,), daemon=True) for _ in range(n)]
        self.threads.append(threading.Thread(target=self.slow, args=(port,), daemon=True))
        for t in self.threads:
            t.start()

    def poll(self, port):
        """What the page does: the live frame 10 times a second, the status twice a second."""
        seen = set()
        self.frames_seen.append(seen)
        i = 0
        while not self.stop.is_set():
            started = time.time()
            paths = ["/api/live.jpg"] + (["/api/status"] if i % 5 == 0 else [])
            for path in paths:
                try:
                    r = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5)
                    r.read()
                    self.requests += 1
                    if path == "/api/live.jpg":
                        seen.add(r.headers.get("x-frame-id"))
                except OSError:
                    pass
            i += 1
            time.sleep(max(0.0, 0.1 - (time.time() - started)))

    def slow(self, port):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(b"GET /api/live.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        while not self.stop.is_set():
            try:
                s.settimeout(2)
                s.recv(1)
            except OSError:
                pass
            time.sleep(1.0)
        s.close()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def run_line(runtime, cfg, *, seconds=None, frames=None, load_port=None):
    """Runs the line; returns (cpu_s, wall_s, summary stdout, client requests)."""
    args = [runtime, "run", "--config", cfg]
    if frames:
        args += ["--max-frames", str(frames)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    clients = None
    if load_port:
        wait_port(load_port)
        clients = Clients(load_port)
    time.sleep(2.0)  # model load and warm-up are not measured
    cpu0, t0 = cpu_seconds(p.pid), time.time()
    if seconds:
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(p.pid), time.time()
        p.send_signal(signal.SIGTERM)
        out = p.communicate()[0]
    else:
        out = p.communicate()[0]
        cpu1, t1 = None, time.time()
    requests, live_fps = 0, 0.0
    if clients:
        clients.close()
        requests = clients.requests
        # Distinct live frames per second a client saw (the first 2 s of warm-up included).
        live_fps = statistics.mean(len(s) for s in clients.frames_seen) / (time.time() - t0 + 2.0)
    return (cpu1 - cpu0 if cpu1 is not None else None), t1 - t0, out, (requests, live_fps)


def inspected_per_s(summary):
    frames = int(re.search(r"inspected (\d+)", summary).group(1))
    wall = float(re.search(r"after ([\d.]+) s", summary).group(1))
    return frames / wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", default=os.path.join(ROOT, "target/release/runtime"))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--overlays", default="none", choices=["none", "rejects", "all"], help="[output].overlays of both lines (the device file's default is all: an overlay PNG per frame, and the live frame is that overlay)")
    a = ap.parse_args()
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    work = tempfile.mkdtemp(prefix="bench-web-")
    replay(work)
    mqtt_port = free_port()
    with open(os.path.join(work, "mosquitto.conf"), "w") as f:
        f.write(f"user root\nlistener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([mosquitto, "-c", os.path.join(work, "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(mqtt_port)
    rows = {"cpu plain": [], "cpu loaded": [], "fps plain": [], "fps loaded": [], "requests/s": [], "live fps": []}
    try:
        for _ in range(a.repeats):
            web_port = free_port()
            cpu, wall, _, _ = run_line(a.runtime, config(work, fps=10, web_port=0, mqtt_port=0, overlays=a.overlays), seconds=a.seconds)
            rows["cpu plain"].append(100 * cpu / wall)
            cpu, wall, _, (req, live) = run_line(a.runtime, config(work, fps=10, web_port=web_port, mqtt_port=mqtt_port, overlays=a.overlays), seconds=a.seconds, load_port=web_port)
            rows["cpu loaded"].append(100 * cpu / wall)
            rows["requests/s"].append(req / wall)
            rows["live fps"].append(live)
            _, _, out, _ = run_line(a.runtime, config(work, fps=1000, web_port=0, mqtt_port=0, overlays=a.overlays), frames=a.frames)
            rows["fps plain"].append(inspected_per_s(out))
            web_port = free_port()
            _, _, out, _ = run_line(a.runtime, config(work, fps=1000, web_port=web_port, mqtt_port=mqtt_port, overlays=a.overlays), frames=a.frames, load_port=web_port)
            rows["fps loaded"].append(inspected_per_s(out))
            print(json.dumps({k: round(v[-1], 2) for k, v in rows.items()}), file=sys.stderr)
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)

    def ms(v):
        return f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"

    print(f"| runtime CPU at 10 frames/s, plain | with web view (live 10/s, 20 clients + 1 slow) and MQTT | cost, % of one core | client requests/s | live frames/s a client saw | inspected frames/s free-running, plain | loaded | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    cost = [l - p for l, p in zip(rows["cpu loaded"], rows["cpu plain"])]
    ratio = [l / p for l, p in zip(rows["fps loaded"], rows["fps plain"])]
    print(f"| {ms(rows['cpu plain'])} % | {ms(rows['cpu loaded'])} % | {ms(cost)} | {ms(rows['requests/s'])} | {ms(rows['live fps'])} | {ms(rows['fps plain'])} | {ms(rows['fps loaded'])} | {ms(ratio)} |")


if __name__ == "__main__":
    main()
