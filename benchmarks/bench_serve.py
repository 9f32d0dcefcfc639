"""The coding service under load, against offline prediction measured in the same run.

Baseline model (TF-IDF), 300-word notes:
  - offline ``TfidfCoder.predict``: notes/s batched and one note at a time;
  - served, closed loop (16 keep-alive clients, 20 s): requests/s, p50/p99 latency, and the
    ratio to offline one-at-a-time;
  - served, open loop at 200 requests/s (20 s; latency from the scheduled send time, so a
    stall is not hidden): p50/p99 (target: p99 < 100 ms);
  - soak: 50 concurrent clients for 60 s: errors, lost requests (sent, never answered) and the
    server's RSS at start and end (target: no error, none lost, memory flat).
Embedded LLM (``--llm embedded``): notes/s served (all notes sent at once, the service batches
them) vs offline ``medcode predict`` on the same notes (target: within 10%), and whether both
gave the same codes.

    .venv/bin/python benchmarks/bench_serve.py [--baseline FOLDER] [--workers 1]
        [--llm embedded] [--llm-notes 8] [--soak-s 60] [--skip-llm]

Without ``--baseline`` a baseline is trained here on a 3,000-note synthetic corpus. The load
generator is this process (asyncio, raw HTTP/1.1 keep-alive), the server a ``medcode serve``
subprocess on 127.0.0.1 logging at info (one line per request, to a file); both share this
machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


# ----------------------------------------------------------------------------- data


def synth_corpus(folder: Path, n: int, seed: int = 11) -> list[dict]:
    from medcode.synth.card import read_rows
    from medcode.synth.generate import SynthConfig, run

    run(SynthConfig(n=n, seed=seed), folder, workers=2)
    return list(read_rows(folder, ["id", "text", "codes", "split"]))


def train_baseline(rows: list[dict], out: Path) -> Path:
    from medcode.baselines.tfidf import TfidfCoder

    train = [r for r in rows if r["split"] == "train"]
    validation = [r for r in rows if r["split"] == "validation"]
    coder = TfidfCoder().fit(
        [r["text"] for r in train],
        [[c["code"] for c in r["codes"]] for r in train],
        [r["text"] for r in validation],
        [[c["code"] for c in r["codes"]] for r in validation],
    )
    return coder.save(out)


def notes_of_words(texts: list[str], words: int, count: int, seed: int = 3) -> list[str]:
    """``count`` notes of exactly ``words`` words, each made of whole synthetic notes (cut at
    the last one), so they read like long real notes."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        taken: list[str] = []
        while len(taken) < words:
            taken += rng.choice(texts).split()
        found.append(" ".join(taken[:words]))
    return found


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    model: str, port: int, *extra: str, log: Path, timeout_s: float = 600
) -> subprocess.Popen:
    command = [sys.executable, "-m", "medcode", "serve", "--model", model, "--port", str(port)]
    command += ["--log-level", os.environ.get("BENCH_LOG_LEVEL", "info"), *extra]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.25)
    process.kill()
    raise SystemExit("the server did not get ready in time")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


# ----------------------------------------------------------------------------- client


class Connection:
    """One keep-alive HTTP/1.1 connection, requests one at a time. Like any HTTP client's
    pool, it does not reuse a connection the server may have closed (idle past
    ``STALE_S``, under the server's 5 s keep-alive, or already at EOF)."""

    STALE_S = 4.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        stale = time.monotonic() - self.used > self.STALE_S
        if self.writer is not None and (stale or self.reader.at_eof()):
            self.close()
        if self.writer is None:
            await self.open()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        self.used = time.monotonic()
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Tally:
    def __init__(self) -> None:
        self.sent = self.ok = self.errors = self.answered = 0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    def summary(self, seconds: float) -> dict:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

        return {
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "lost": self.sent - self.answered,
            "per_s": self.ok / seconds,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "statuses": dict(self.statuses),
        }


async def _one(connection: Connection, body: bytes, tally: Tally, since: float | None = None):
    started = since if since is not None else time.perf_counter()
    tally.sent += 1
    try:
        status, payload = await connection.post("/v1/code", body)
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
        connection.close()
        return
    tally.answered += 1
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if status == 200 and payload[:1] == b"{":
        tally.ok += 1
        tally.latencies.append(time.perf_counter() - started)
    else:
        tally.errors += 1


async def closed_loop(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` connections, each sending its next request as soon as it has an answer."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        connection = Connection(port)
        i = index
        while time.perf_counter() < stop_at:
            await _one(connection, bodies[i % len(bodies)], tally)
            i += clients
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return tally.summary(time.perf_counter() - started)


async def open_loop(port: int, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """Requests sent at a fixed rate whatever the answers, each latency counted from its
    scheduled time (a stall shows up in the percentiles)."""
    tally = Tally()
    idle: list[Connection] = []
    tasks = []

    async def send(i: int, scheduled: float) -> None:
        connection = idle.pop() if idle else Connection(port)
        await _one(connection, bodies[i % len(bodies)], tally, since=scheduled)
        idle.append(connection)

    started = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for connection in idle:
        connection.close()
    return tally.summary(elapsed)


async def soak(port: int, pid: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    samples = [rss_mb(pid)]

    async def sample() -> None:
        while True:
            await asyncio.sleep(5)
            samples.append(rss_mb(pid))

    sampler = asyncio.create_task(sample())
    result = await closed_loop(port, bodies, clients, seconds)
    sampler.cancel()
    samples.append(rss_mb(pid))
    result["rss_mb"] = samples
    return result


# ----------------------------------------------------------------------------- parts


def show(label: str, r: dict) -> None:
    print(
        f"  {label}: {r['per_s']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"max {r['max_ms']:.0f} ms; {r['requests']:,} sent, {r['errors']} errors, "
        f"{r['lost']} lost"
    )


def bench_baseline(args, tmp: Path) -> None:
    from medcode.baselines.tfidf import TfidfCoder

    if args.baseline:
        folder = Path(args.baseline)
        texts = None
    else:
        print("training a baseline on 3,000 synthetic notes ...", flush=True)
        rows = synth_corpus(tmp / "corpus", 3000)
        folder = train_baseline(rows, tmp / "baseline")
        texts = [r["text"] for r in rows if r["split"] == "test"]
    if texts is None:
        rows = synth_corpus(tmp / "notes", 300, seed=17)
        texts = [r["text"] for r in rows]
    notes = notes_of_words(texts, 300, 64)
    coder = TfidfCoder.load(folder)
    print(f"baseline: {folder} ({len(coder.codes):,} codes); 64 distinct notes of 300 words")

    coder.predict(notes[:4])
    started = time.perf_counter()
    for _ in range(5):
        coder.predict(notes)
    batched = 5 * len(notes) / (time.perf_counter() - started)
    started = time.perf_counter()
    for note in notes * 3:
        coder.predict([note])
    single = 3 * len(notes) / (time.perf_counter() - started)
    print(
        f"offline TfidfCoder.predict: {batched:.0f} notes/s batched, "
        f"{single:.0f} notes/s one at a time"
    )

    bodies = [json.dumps({"text": n, "setting": "outpatient"}).encode() for n in notes]
    port = free_port()
    server = start_server(
        str(folder), port, "--workers", str(args.workers), log=tmp / "baseline_server.log"
    )
    try:
        asyncio.run(closed_loop(port, bodies, 4, 3))  # warm up
        peak = asyncio.run(closed_loop(port, bodies, 16, 20))
        print(f"served by {args.workers} worker(s), 16 clients, closed loop, 20 s:")
        show("max throughput", peak)
        print(
            f"  served / offline one-at-a-time: {peak['per_s'] / single:.2f}; "
            f"served / offline batched: {peak['per_s'] / batched:.2f}"
        )
        steady = asyncio.run(open_loop(port, bodies, args.rate, 20))
        show(f"open loop at {args.rate:.0f} req/s", steady)
        met = (
            steady["per_s"] >= args.rate * 0.98 and steady["p99_ms"] < 100 and not steady["errors"]
        )
        verdict = "met" if met and args.rate >= 200 else "NOT met"
        print(f"  target >= 200 req/s with p99 < 100 ms: {verdict}")
        result = asyncio.run(soak(port, server.pid, bodies, 50, args.soak_s))
        rss = result["rss_mb"]
        print(f"soak, 50 concurrent clients for {args.soak_s:.0f} s:")
        show("soak", result)
        growth = rss[-1] - rss[1] if len(rss) > 2 else rss[-1] - rss[0]
        print(
            f"  server RSS: {rss[0]:.0f} MB at start, {rss[1] if len(rss) > 1 else rss[0]:.0f} MB "
            f"after 5 s, {rss[-1]:.0f} MB at end ({growth:+.0f} MB after warm-up); "
            f"samples every 5 s: {', '.join(f'{x:.0f}' for x in rss)}"
        )
        ok = not result["errors"] and not result["lost"] and growth < 0.05 * rss[-1] + 10
        print(f"  target no error, none lost, memory flat: {'met' if ok else 'NOT met'}")
    finally:
        stop_server(server)


def bench_llm(args, tmp: Path) -> None:
    rows = synth_corpus(tmp / "llm_notes", 200, seed=23)
    texts = [r["text"] for r in rows if r["split"] == "test"] or [r["text"] for r in rows]
    notes = notes_of_words(texts, 300, args.llm_notes, seed=5)
    notes_file = tmp / "llm_notes.jsonl"
    notes_file.write_text(
        "".join(json.dumps({"id": f"n{i}", "text": t}) + "\n" for i, t in enumerate(notes))
    )
    out = tmp / "llm_pred.jsonl"
    print(f"LLM {args.llm}: {len(notes)} notes of 300 words, batch size {args.batch_size}")
    command = [
        sys.executable,
        "-m",
        "medcode",
        "predict",
        "--model",
        args.llm,
        "--input",
        str(notes_file),
        "--out",
        str(out),
        "--batch-size",
        str(args.batch_size),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = json.loads(out.with_suffix(".run.json").read_text())
    offline = record["notes_coded"] / record["seconds"]
    offline_codes = [json.loads(line)["codes"] for line in out.read_text().splitlines()]
    print(
        f"  offline medcode predict: {offline:.3f} notes/s ({record['seconds']:.1f} s, "
        "model loading excluded)"
    )

    port = free_port()
    log = tmp / "llm_server.log"
    server = start_server(
        args.llm,
        port,
        "--batch-size",
        str(args.batch_size),
        "--timeout",
        "3600",
        "--log-level",
        "debug",  # the batch sizes, to show how the notes were batched
        log=log,
    )
    try:
        bodies = [json.dumps({"text": n}).encode() for n in notes]

        async def all_at_once() -> tuple[float, list]:
            connections = [Connection(port) for _ in bodies]
            started = time.perf_counter()
            replies = await asyncio.gather(
                *(c.post("/v1/code", b) for c, b in zip(connections, bodies, strict=True))
            )
            elapsed = time.perf_counter() - started
            for c in connections:
                c.close()
            return elapsed, replies

        elapsed, replies = asyncio.run(all_at_once())
        statuses = [status for status, _ in replies]
        served_codes = [
            [c["code"] for c in json.loads(p)["codes"]] if s == 200 else None for s, p in replies
        ]
        served = len(notes) / elapsed
        same = sum(a == b for a, b in zip(offline_codes, served_codes, strict=True))
        ratio = served / offline
        print(
            f"  served: {served:.3f} notes/s ({elapsed:.1f} s, statuses {sorted(set(statuses))}); "
            f"served / offline = {ratio:.2f}; same codes for {same}/{len(notes)} notes"
        )
        print(f"  target within 10% of offline: {'met' if ratio >= 0.9 else 'NOT met'}")
    finally:
        stop_server(server)
    batches = re.findall(r"batch notes=(\d+) ms=([\d.]+)", log.read_text())
    shown = [(int(n), round(float(ms) / 1000, 1)) for n, ms in batches]
    print(f"  server batches (notes, seconds): {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a baseline folder (default: train one here)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--soak-s", type=float, default=60.0)
    parser.add_argument("--llm", default="embedded")
    parser.add_argument("--llm-notes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_baseline:
            bench_baseline(args, Path(tmp))
        if not args.skip_llm:
            bench_llm(args, Path(tmp))


if __name__ == "__main__":
    main()
