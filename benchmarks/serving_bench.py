"""Serving benchmark: the churn service against a bare BentoML echo service, in the same run.

On the 100,000-customer sample (``data/bench/sample_100k_3y.duckdb``, made by
``benchmarks/features_bench.py``) it measures:

- ``churn score`` for every active customer (a fresh process, imports included);
- single-customer ``POST /predict`` under load: Locust, 8 users with no think time, 10,000 requests
  (after a warm-up), against the churn service and against ``benchmarks/echo_service.py``; p50,
  p99, errors, and the ratio of the two;
- a 1,000-customer ``/predict`` batch, sequential calls: median and worst.

Targets (issue 6, 2-core machine, loopback): single p50 < 20 ms and p99 < 60 ms with 0 errors in
10,000 requests; 1,000-customer batch < 500 ms; ``churn score`` < 60 s.

The data file is copied to ``--workdir`` (the batch writes its risk list into it). A champion is
trained there once (``--trials``) when the tracking store has none. Results go to
``<workdir>/serving_bench.json`` and are printed as a table.

Usage::

    .venv/bin/python benchmarks/serving_bench.py [--data PATH] [--requests 10000] [--users 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
DEFAULT_DATA = ROOT / "data" / "bench" / "sample_100k_3y.duckdb"
DEFAULT_WORKDIR = ROOT / "data" / "bench" / "serving"
API_KEY = "bench-key"
WARMUP = 300
TARGETS = {"p50_ms": 20.0, "p99_ms": 60.0, "batch_1000_ms": 500.0, "score_s": 60.0}
QUIET = {"BENTOML_DO_NOT_TRACK": "True", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation.

    Args:
        values: the sample.
        q: the percentile.

    Returns:
        The value.
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def prepare_data(source: Path, workdir: Path) -> Path:
    """Copy the sample into the work folder (once; again when the source changed).

    Args:
        source: the benchmark dataset.
        workdir: the benchmark's own folder.

    Returns:
        The copy.
    """
    if not source.exists():
        sys.exit(f"no benchmark data at {source}: run `.venv/bin/python benchmarks/features_bench.py` first")
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / "crm.duckdb"
    stamp = workdir / "source.json"
    marker = {"source": str(source), "size": source.stat().st_size, "mtime": source.stat().st_mtime_ns}
    if not target.exists() or not stamp.exists() or json.loads(stamp.read_text()) != marker:
        shutil.copy(source, target)
        stamp.write_text(json.dumps(marker))
    return target


def environment(data: Path, tracking_uri: str, workdir: Path) -> dict[str, str]:
    """The ``CHURN_*`` environment of every process of the benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    env.update(QUIET)
    env.update(
        {
            "CHURN_DATA": str(data),
            "CHURN_TRACKING_URI": tracking_uri,
            "CHURN_ARTIFACT_ROOT": str(workdir / "artifacts"),
            "CHURN_API_KEY": API_KEY,
            "BENTOML_HOME": str(workdir / "bentoml_home"),
        }
    )
    return env


def ensure_champion(env: dict[str, str], trials: int) -> float | None:
    """Train and register a champion in the benchmark's tracking store when it has none.

    Returns:
        Seconds spent training, or None when a champion was there.
    """
    check = "from serving.runtime import champion_version as v; import os; print(v(os.environ['CHURN_TRACKING_URI'], 'churn') or '')"
    found = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    if found.stdout.strip():
        return None
    script = (
        "import os; from features.dataset import open_dataset; from training.train import train\n"
        "d = open_dataset(os.environ['CHURN_DATA'], validate=False)\n"
        f"r = train(d, trials={trials}, timeout_s=900, tracking_uri=os.environ['CHURN_TRACKING_URI'], "
        "artifact_root=os.environ['CHURN_ARTIFACT_ROOT'], progress=print)\n"
        "print('trained', r.model_version, r.metrics.get('pr_auc'))\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=ROOT)
    return time.perf_counter() - started


def time_score(env: dict[str, str], out: Path) -> dict[str, Any]:
    """``churn score`` for every active customer, in a fresh process.

    Returns:
        Wall seconds (imports included), the rows scored and the run's own log.
    """
    script = (
        "import os, sys; from churn.settings import load_settings; from serving.batch import score_all\n"
        f"frame = score_all(load_settings(), out={str(out)!r}, progress=lambda m: print(m, flush=True))\n"
        "print('rows', len(frame))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"churn score failed:\n{done.stderr[-3000:]}")
    rows = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("rows ")))
    return {"wall_s": round(wall, 2), "rows": rows, "log": done.stdout.strip().splitlines()}


class Server:
    """A ``bentoml serve`` process on a free loopback port."""

    def __init__(self, target: str, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 600) -> float:
        """Seconds until /readyz answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        sys.exit(f"server not ready after {timeout} s; see {self.log.name}")

    def stop(self) -> None:
        """Stop the server and its workers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def load_test(url: str, ids_file: Path, requests: int, users: int, key: str, workdir: Path, explain: str | None = None) -> dict[str, Any]:
    """Locust, headless, ``users`` users without think time, until ``requests`` (+ warm-up) requests.

    Returns:
        p50, p90, p99, max (ms), throughput and errors, warm-up excluded.
    """
    out = workdir / f"locust_{free_port()}.json"
    env = {**os.environ, **QUIET, "BENCH_IDS": str(ids_file), "BENCH_API_KEY": key, "BENCH_REQUESTS": str(requests + WARMUP), "BENCH_OUT": str(out), **({"BENCH_EXPLAIN": explain} if explain else {})}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(BENCH / "serving_locustfile.py"), "--headless", "-u", str(users), "-r", str(users),
         "--host", url, "--run-time", "30m", "--only-summary", "--skip-log-setup", "--loglevel", "ERROR"],
        env=env, check=False, capture_output=True, cwd=workdir,
    )
    wall = time.perf_counter() - started
    result = json.loads(out.read_text())
    out.unlink()
    latencies = result["latencies_ms"][WARMUP:]
    return {
        "requests": len(latencies),
        "errors": len(result["errors"]),
        "error_examples": result["errors"][:3],
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "throughput_rps": round(len(result["latencies_ms"]) / wall, 1),
    }


def all_customer_ids(url: str) -> list[str]:
    """Every active customer's id, from the service's risk list, shuffled (so that the load test
    asks about customers uniformly and repeats only by chance).

    Returns:
        The ids.
    """
    import random

    ids: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as client:
        while True:
            page = client.post("/risk_list", json={"limit": 1000, "offset": len(ids), "explain": False}).json()
            ids += [i["customer_id"] for i in page["items"]]
            if not page["items"] or len(ids) >= page["total"]:
                break
    random.Random(7).shuffle(ids)
    return ids


def time_batches(url: str, ids: list[str], repeats: int, explain: str) -> dict[str, Any]:
    """Sequential 1,000-customer /predict calls, each with other customers (no cached reasons).

    Returns:
        Median and worst milliseconds, and how many customers got reasons.
    """
    times = []
    explained = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120) as client:
        for i in range(repeats + 2):
            start = (i * 1000) % max(1, len(ids) - 1000)
            body = {"customers": [{"customer_id": c} for c in ids[start : start + 1000]], "explain": explain}
            started = time.perf_counter()
            answer = client.post("/predict", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            answer.raise_for_status()
            if i >= 2:
                times.append(elapsed)
            explained = sum(r.get("explained", False) for r in answer.json()["results"])
    return {"customers": min(1000, len(ids)), "explain": explain, "explained": explained,
            "median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--tracking-uri", default=None, help="default: a SQLite store in the work folder")
    parser.add_argument("--trials", type=int, default=5, help="Optuna trials when a champion must be trained first")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--batch-repeats", type=int, default=10)
    parser.add_argument("--skip-score", action="store_true", help="do not time churn score")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of both services")
    parser.add_argument("--explain-all", action="store_true", help="also load-test with reasons for every customer (explain=all)")
    parser.add_argument("--threads", type=int, default=None, help="request threads per worker of both services (BentoML's default when not given)")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    data = prepare_data(args.data.resolve(), workdir)
    tracking_uri = args.tracking_uri or f"sqlite:///{(workdir / 'mlflow.db').as_posix()}"
    env = environment(data, tracking_uri, workdir)
    report: dict[str, Any] = {"data": str(args.data), "machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}}

    trained = ensure_champion(env, args.trials)
    if trained is not None:
        report["training_s"] = round(trained, 1)
    if not args.skip_score:
        print("timing churn score ...", flush=True)
        report["churn_score"] = time_score(env, workdir / "risk_list.parquet")

    report["workers"] = args.workers
    report["threads"] = args.threads
    config: dict[str, int] = {"workers": args.workers}
    if args.threads:
        config["threads"] = args.threads
    echo_env = {**env, "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"echo": config}})}
    churn_env = {**env, "BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"churn": config}})}
    echo = Server("echo_service:EchoService", echo_env, BENCH, workdir / "echo.log")
    churn = Server("serving.service:ChurnService", churn_env, ROOT, workdir / "service.log")
    try:
        report["echo_ready_s"] = round(echo.wait_ready(), 1)
        report["service_ready_s"] = round(churn.wait_ready(), 1)
        ids = all_customer_ids(churn.url)
        report["customers"] = len(ids)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, dir=workdir) as f:
            json.dump(ids, f)
            ids_file = Path(f.name)
        print(f"load test: echo service, {args.users} users, {args.requests} requests ...", flush=True)
        report["echo"] = load_test(echo.url, ids_file, args.requests, args.users, "", workdir)
        print(f"load test: churn service, {args.users} users, {args.requests} requests ...", flush=True)
        report["predict_single"] = load_test(churn.url, ids_file, args.requests, args.users, API_KEY, workdir)
        report["ratio_p50"] = round(report["predict_single"]["p50_ms"] / report["echo"]["p50_ms"], 2)
        report["ratio_p99"] = round(report["predict_single"]["p99_ms"] / report["echo"]["p99_ms"], 2)
        if args.explain_all:
            print("load test: churn service, every answer explained ...", flush=True)
            report["predict_single_explain_all"] = load_test(churn.url, ids_file, args.requests, args.users, API_KEY, workdir, "all")
        print("1,000-customer batches ...", flush=True)
        report["batch_1000"] = time_batches(churn.url, ids, args.batch_repeats, "auto")
        report["batch_1000_no_reasons"] = time_batches(churn.url, ids, args.batch_repeats, "none")
        ids_file.unlink()
    finally:
        churn.stop()
        echo.stop()
    report["machine"]["load_after"] = os.getloadavg()
    (workdir / "serving_bench.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report: dict[str, Any]) -> None:
    """The figures as a Markdown table."""
    s, e = report["predict_single"], report["echo"]
    rows = [
        ("single /predict p50 (ms)", s["p50_ms"], e["p50_ms"], report["ratio_p50"], TARGETS["p50_ms"]),
        ("single /predict p99 (ms)", s["p99_ms"], e["p99_ms"], report["ratio_p99"], TARGETS["p99_ms"]),
        *(
            [("single /predict, explain=all, p50 / p99 (ms)", f"{report['predict_single_explain_all']['p50_ms']} / {report['predict_single_explain_all']['p99_ms']}", "", "", "")]
            if "predict_single_explain_all" in report else []
        ),
        ("errors / requests", f"{s['errors']} / {s['requests']}", f"{e['errors']} / {e['requests']}", "", 0),
        ("throughput (req/s)", s["throughput_rps"], e["throughput_rps"], "", ""),
        ("1,000-customer batch, median / worst (ms)", f"{report['batch_1000']['median_ms']} / {report['batch_1000']['max_ms']}", "", "", TARGETS["batch_1000_ms"]),
        ("  same without reasons (ms)", f"{report['batch_1000_no_reasons']['median_ms']} / {report['batch_1000_no_reasons']['max_ms']}", "", "", ""),
    ]
    if "churn_score" in report:
        rows.append((f"churn score, {report['churn_score']['rows']:,} customers (s)", report["churn_score"]["wall_s"], "", "", TARGETS["score_s"]))
    print(f"\nserving benchmark, {report.get('customers', '?'):,} customers, {report['machine']['cpus']} CPUs, load {report['machine']['load_before'][0]:.1f} before")
    print("| measure | churn service | echo service | ratio | target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    sys.exit(main())
