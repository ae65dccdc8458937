"""Load test of ``moohead serve``: closed-loop HTTP clients against a real SST-2 model.

.venv/bin/python benchmarks/serve_load.py            # builds runs/serve_bench_model if missing
.venv/bin/python benchmarks/serve_load.py --table    # print the README table from the JSON

The model is the knee head of a small real search on SST-2 with the packaged MiniLM
encoder, exported with ``--optimize --quantize int8``. For the int8 and fp32 variants:
offline ``OnnxClassifier.predict`` throughput at batch 32 on the 872 validation sentences
(length-sorted batches; and, for reference, batches of 32 in arrival order), then a
``moohead serve`` process loaded by 1, 8, 32 and 128 closed-loop clients (each sends
one sentence per request and sends the next as soon as the answer is back), timed for a
few seconds per point after a warm-up: requests per second, p50/p95/p99 latency and the
server's mean batch size (from its ``/metrics``). Last, an overload run far past
saturation with a small ``--max-queue``: what the clients got (200s and 503s, nothing
else expected) and the server's RSS, sampled throughout. Clients and server share the
machine's cores; ORT gets ``--threads`` (1) threads in the server and offline alike.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from common import RESULTS, ROOT, glue_dir, write_result

from moohead.export.runtime import OnnxClassifier

RUN = ROOT / "runs" / "serve_bench"
MODEL = ROOT / "runs" / "serve_bench_model"
MOOHEAD = str(Path(sys.executable).with_name("moohead"))
CONCURRENCY = (1, 8, 32, 128)
LONG_DELAY_CLIENTS = (1, 32)
VARIANTS = ("int8", "fp32")
OVERLOAD_CLIENTS = 512
OVERLOAD_QUEUE = 32


def ensure_model(glue: Path) -> None:
    """A small real SST-2 search and its knee head's export, unless already there."""
    if (MODEL / "moohead.json").is_file():
        return
    if not (RUN / "front.json").is_file():
        subprocess.run(
            [MOOHEAD, "evolve", "--task", "sst2", "--data-dir", str(glue), "--out", str(RUN),
             "--population", "6", "--generations", "2", "--max-train", "1000",
             "--max-length", "64", "--seed", "0", "--objectives", "score,flops",
             "--device", "cpu"],
            check=True,
        )  # fmt: skip
    subprocess.run(
        [MOOHEAD, "export", str(RUN), "--knee", "--optimize", "--quantize", "int8",
         "--out", str(MODEL)],
        check=True,
    )  # fmt: skip


def sst2_sentences(glue: Path) -> list[str]:
    with open(glue / "sst2" / "validation.tsv", encoding="utf-8", newline="") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]


def offline(variant: str, texts: list[str], threads: int, seconds: float) -> dict[str, float]:
    """Texts per second of ``OnnxClassifier`` in this process, three ways.

    ``predict``: ``predict(texts, batch_size=32)``, which sorts all the texts by length
    first, so each batch holds texts of about one length (little padding). ``arrival``:
    one ORT call per 32 texts in the file's order, each padded to its longest text (what
    a server of one-text requests did before length groups). ``groups``: the same batches
    of 32 in arrival order, each run as length groups (``padding_groups``), as ``logits``
    and so ``moohead serve`` now run a batch on CPU.
    """
    model = OnnxClassifier.load(MODEL, variant=variant, device="cpu", threads=threads)
    model.predict(texts[:64])
    grouped = model.call_tokens

    def rate(run: Any) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            run()
            done += len(texts)
        return done / (time.perf_counter() - start)

    def arrival() -> None:
        for i in range(0, len(texts), 32):
            model.logits(texts[i : i + 32], batch_size=32)

    out = {"predict": rate(lambda: model.predict(texts, batch_size=32)), "groups": rate(arrival)}
    model.call_tokens = float("inf")
    out["arrival"] = rate(arrival)
    model.call_tokens = grouped
    return out


class Server:
    """A ``moohead serve`` process on a free port."""

    def __init__(self, *args: str) -> None:
        cmd = [MOOHEAD, "serve", str(MODEL), "--port", "0", "--device", "cpu", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if " at http://" not in line:
            raise SystemExit(f"moohead serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split(" at ")[1].split(": ")[0]
        self.ps = psutil.Process(self.proc.pid)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / (1 << 20)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


async def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    probe = Connection(url)  # a new one: an idle keep-alive connection is closed after 5 s
    text = (await probe.request("GET", "/metrics"))[1].decode()
    probe.close()
    values = {}
    for line in text.splitlines():
        if line.startswith(("moohead_batch_size_sum", "moohead_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("moohead_batch_size_sum", 0.0), values.get("moohead_batch_size_count", 0.0)


class Connection:
    """One keep-alive HTTP/1.1 connection, with just enough HTTP for this server's answers.

    httpx's async pool costs milliseconds of CPU per request at high concurrency, which on
    a small machine would measure the client rather than the server.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        answer = (await reader.readuntil(b"\r\n\r\n")).lower()
        length = int(answer.split(b"content-length:")[1].split(b"\r\n")[0])
        data = await reader.readexactly(length)
        if b"connection: close" in answer:
            writer.close()
            self.streams = None
        return int(answer[9:12]), data

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def closed_loop(
    url: str, texts: list[str], clients: int, seconds: float, warmup: float, sample: Any = None
) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``warmup + seconds``; stats of the timed part."""
    state = {"measuring": False, "stop": False}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
    connections = [Connection(url) for _ in range(clients)]

    async def worker(i: int) -> None:
        j = i
        while not state["stop"]:
            start = time.perf_counter()
            try:
                code, _ = await connections[i].request("POST", "/predict", bodies[j % len(bodies)])
                status = str(code)
            except (OSError, asyncio.IncompleteReadError) as exc:
                status = type(exc).__name__
                connections[i] = Connection(url)
            elapsed = time.perf_counter() - start
            if state["measuring"]:
                statuses[status] += 1
                if status == "200":
                    latencies.append(elapsed)
            j += clients

    tasks = [asyncio.create_task(worker(i)) for i in range(clients)]
    await asyncio.sleep(warmup)
    before = await batch_stats(url)
    state["measuring"] = True
    start = time.perf_counter()
    samples = []
    while time.perf_counter() - start < seconds:
        await asyncio.sleep(0.25)
        if sample is not None:
            samples.append(sample())
    state["measuring"] = False
    elapsed = time.perf_counter() - start
    after = await batch_stats(url)
    state["stop"] = True
    await asyncio.gather(*tasks)
    for c in connections:
        c.close()
    lat = np.array(latencies) * 1000
    batches = after[1] - before[1]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "statuses": dict(statuses),
        "ok_per_s": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "mean_batch": (after[0] - before[0]) / batches if batches else None,
        "samples": samples,
    }


def sweep(
    variant: str,
    texts: list[str],
    args: argparse.Namespace,
    off: dict[str, float],
    delay_ms: float,
    concurrency: tuple[int, ...],
) -> tuple[list[dict[str, Any]], float, int]:
    """A server with ``--max-delay-ms delay_ms`` under each client count: its points, RSS
    after the sweep and exit code."""
    server = Server("--variant", variant, "--threads", str(args.threads),
                    "--max-batch", str(args.max_batch), "--max-delay-ms", str(delay_ms))  # fmt: skip
    points = []
    try:
        for clients in concurrency:
            p = asyncio.run(closed_loop(server.url, texts, clients, args.seconds, args.warmup))
            p.pop("samples")
            p["max_delay_ms"] = delay_ms
            p["vs_offline"] = p["ok_per_s"] / off["predict"]
            p["vs_arrival"] = p["ok_per_s"] / off["arrival"]
            p["p99_over_p50"] = p["p99_ms"] / p["p50_ms"]
            points.append(p)
            print(
                f"  {clients:>3} clients, delay {delay_ms:g} ms: {p['ok_per_s']:.0f} req/s "
                f"({p['vs_offline']:.0%} of offline), p50 {p['p50_ms']:.1f} p95 "
                f"{p['p95_ms']:.1f} p99 {p['p99_ms']:.1f} ms, mean batch {p['mean_batch']:.1f}",
                flush=True,
            )
        rss = server.rss_mib()
    finally:
        code = server.stop()
    return points, rss, code


def run_variant(variant: str, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    off = offline(variant, texts, args.threads, args.seconds)
    print(
        f"{variant}: offline {off['predict']:.0f} texts/s; in arrival order "
        f"{off['arrival']:.0f} in one call a batch, {off['groups']:.0f} in length groups"
    )
    points, rss, code = sweep(variant, texts, args, off, args.max_delay_ms, CONCURRENCY)
    # The same server waiting longer for company: larger batches, at a latency cost alone.
    longer, _, _ = sweep(variant, texts, args, off, args.long_delay_ms, LONG_DELAY_CLIENTS)
    return {
        "offline_texts_per_s": off["predict"],
        "offline_arrival_texts_per_s": off["arrival"],
        "offline_arrival_groups_texts_per_s": off["groups"],
        "points": points,
        "long_delay_points": longer,
        "rss_mib": rss,
        "exit_code": code,
    }


def run_overload(texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    server = Server("--variant", "int8", "--threads", str(args.threads),
                    "--max-batch", str(args.max_batch), "--max-delay-ms", str(args.max_delay_ms),
                    "--max-queue", str(OVERLOAD_QUEUE), "--max-texts", "1")  # fmt: skip
    try:
        idle = server.rss_mib()
        p = asyncio.run(
            closed_loop(
                server.url,
                texts,
                OVERLOAD_CLIENTS,
                args.overload_seconds,
                args.warmup,
                server.rss_mib,
            )
        )
    finally:
        code = server.stop()
    rss = p.pop("samples")
    p.update(
        max_queue=OVERLOAD_QUEUE,
        rss_idle_mib=idle,
        rss_first_mib=rss[0],
        rss_max_mib=max(rss),
        rss_last_mib=rss[-1],
        rss_every_250ms_mib=[round(r, 1) for r in rss],
        exit_code=code,
    )
    print(f"overload: {p['statuses']}, RSS {rss[0]:.0f} -> max {max(rss):.0f} MiB", flush=True)
    return p


def table(data: dict[str, Any]) -> str:
    rows = [
        "| variant | clients | req/s | vs offline predict | vs arrival order, one call | p50 ms | p95 ms | p99 ms | p99/p50 | mean batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, v in data["variants"].items():
        predict, arrival = v["offline_texts_per_s"], v["offline_arrival_texts_per_s"]
        rows += [
            f"| {variant} | offline `predict`, batch 32 | {predict:.0f} | 1.00x | {predict / arrival:.2f}x | | | | | 32 |",
            f"| {variant} | offline, arrival order, batch 32, one call | {arrival:.0f} | {arrival / predict:.2f}x | 1.00x | | | | | 32 |",
        ]
        if "offline_arrival_groups_texts_per_s" in v:  # runs since length groups
            groups = v["offline_arrival_groups_texts_per_s"]
            rows.append(
                f"| {variant} | offline, arrival order, batch 32, length groups | {groups:.0f} | "
                f"{groups / predict:.2f}x | {groups / arrival:.2f}x | | | | | 32 |"
            )
        for p in [*v["points"], *v.get("long_delay_points", [])]:
            clients = p["clients"]
            if p.get("max_delay_ms", data["max_delay_ms"]) != data["max_delay_ms"]:
                clients = f"{clients}, `--max-delay-ms {p['max_delay_ms']:g}`"
            rows.append(
                f"| {variant} | {clients} | {p['ok_per_s']:.0f} | {p['vs_offline']:.2f}x | "
                f"{p['vs_arrival']:.2f}x | {p['p50_ms']:.1f} | {p['p95_ms']:.1f} | "
                f"{p['p99_ms']:.1f} | {p['p99_over_p50']:.2f} | {p['mean_batch']:.1f} |"
            )
    o = data["overload"]
    statuses = ", ".join(f"{k}: {n}" for k, n in sorted(o["statuses"].items()))
    rows += [
        "",
        "| overload run | clients | --max-queue | answers | 200/s | p50 / p99 ms of 200s | RSS idle / first / max / last MiB |",
        "|---|---|---|---|---|---|---|",
        f"| int8 | {o['clients']} | {o['max_queue']} | {statuses} | {o['ok_per_s']:.0f} | "
        f"{o['p50_ms']:.0f} / {o['p99_ms']:.0f} | {o['rss_idle_mib']:.0f} / {o['rss_first_mib']:.0f} / "
        f"{o['rss_max_mib']:.0f} / {o['rss_last_mib']:.0f} |",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Timed seconds per point.")
    parser.add_argument("--warmup", type=float, default=1.5, help="Untimed seconds first.")
    parser.add_argument("--overload-seconds", type=float, default=20.0)
    # One ORT thread: the other core runs the server's HTTP side and the clients.
    parser.add_argument("--threads", type=int, default=1, help="ORT threads (server, offline).")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--long-delay-ms", type=float, default=20.0, help="The second sweep's.")
    parser.add_argument("--table", action="store_true", help="Print the table of the last run.")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((RESULTS / "serve_load.json").read_text())))
        return
    glue = glue_dir()
    ensure_model(glue)
    texts = sst2_sentences(glue)
    doc = json.loads((MODEL / "moohead.json").read_text())
    data: dict[str, Any] = {
        "model": {"summary": doc.get("summary"), "max_length": doc["max_length"],
                  "scores": doc.get("scores"), "run": str(RUN.relative_to(ROOT))},
        "texts": len(texts),
        "seconds_per_point": args.seconds,
        "overload_seconds": args.overload_seconds,
        "warmup_s": args.warmup,
        "threads": args.threads,
        "max_batch": args.max_batch,
        "max_delay_ms": args.max_delay_ms,
        "variants": {v: run_variant(v, texts, args) for v in VARIANTS},
    }  # fmt: skip
    data["overload"] = run_overload(texts, args)
    write_result("serve_load", data)
    print(table(data))


if __name__ == "__main__":
    main()
