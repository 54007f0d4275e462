#!/usr/bin/env python3
"""Firmware storage throughput and memory, measured side by side with plain tools in one run.

    python bench/firmware_bench.py                 # 100 MiB image, 3 rounds (about 2 minutes)
    python bench/firmware_bench.py --size-mib 20 --rounds 1     # smoke run (NOT for results)

What is measured (median of the rounds, MiB/s = image size / wall time of one transfer):
  local  upload    POST /api/v1/firmware (multipart, streamed, sha256, fsync'd atomic store)
         yardstick `cp FILE DIR/` and `cp FILE DIR/ && sync FILE` (the durable equivalent)
  local  download  GET /api/v1/firmware/{id}/download (200, ETag) into a file
         yardstick `cp STORED DIR/`
  s3     upload    the same POST with USE_S3=true against moto_server
         yardstick boto3 `upload_file` of the same file to the same moto_server
  s3     download  GET .../download -> 302 -> presigned GET from moto_server, into a file
         yardstick boto3 `download_file` from the same moto_server
  ceiling  `http_drain`: the same gunicorn reading the same multipart POST and discarding it,
           `http_static`: the same gunicorn sending the same file with wsgi.file_wrapper
           (what any WSGI endpoint on this server can reach at best)
  memory  peak RSS growth of the gunicorn worker while it receives the 100 MiB upload

The web server is real: gunicorn (1 worker) serving ``web:create_app()`` on a scratch
PostgreSQL database (nhbench_fw_<pid>, dropped at the end); everything is on 127.0.0.1 and
every process started here is stopped in a ``finally``.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the product's process wrapper, from this checkout
from web.procs import ChildProcess  # noqa: E402
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MIB = 1024 * 1024
AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
       "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}


def log(msg: str) -> None:
    print(f"[firmware-bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(host: str, port: int, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"http://{host}:{port}{path} did not answer")


class Proc(ChildProcess):
    """A child in its own session (started at once), stopped with its whole group."""

    def __init__(self, argv, env, log_path: Path):
        super().__init__(log_path.stem, argv, env, cwd=ROOT, log_path=log_path)
        self.start()

    def stop(self) -> None:
        """SIGTERM the group, 15 s, then SIGKILL what is left of it."""
        super().stop(15, group=True)


def make_image(path: Path, size: int) -> str:
    digest, block = hashlib.sha256(), os.urandom(MIB)
    with open(path, "wb") as out:
        for i in range(0, size, MIB):
            chunk = (block[i % 977:] + block[:i % 977])[:min(MIB, size - i)]
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# --- our HTTP client side: a streamed multipart POST and a streamed GET -----------------------
# Both are written to cost the client as little CPU as possible (sendfile up, readinto into one
# buffer down): client and server share this machine's cores. The same functions measure the
# http_drain / http_static ceilings, so the ratios to them compare like with like.

def post_multipart(port: int, token: str, fields: dict, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    head = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                    .encode() for k, v in fields.items())
    head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
             f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.putrequest("POST", "/api/v1/firmware")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with open(path, "rb") as fh:  # zero-copy from the page cache: the client costs little CPU
        conn.sock.sendfile(fh)
    conn.send(tail)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    if resp.status != 201:
        raise RuntimeError(f"upload failed: {resp.status} {body}")
    return body


def get_to_file(url_or_port, path: str, token: str | None, out: Path) -> int:
    """GET into a file, following one redirect (the presigned S3 URL) without the token."""
    if isinstance(url_or_port, int):
        host, port, target = "127.0.0.1", url_or_port, path
    else:
        u = urlsplit(url_or_port)
        host, port, target = u.hostname, u.port, u.path + (f"?{u.query}" if u.query else "")
    conn = http.client.HTTPConnection(host, port, timeout=600)
    conn.request("GET", target, headers={"Authorization": f"Bearer {token}"} if token else {})
    resp = conn.getresponse()
    if resp.status == 302:
        resp.read()
        return get_to_file(resp.getheader("Location"), "", None, out)
    if resp.status != 200:
        raise RuntimeError(f"download failed: {resp.status} {resp.read()[:300]!r}")
    n, buf = 0, memoryview(bytearray(4 * MIB))  # one reused buffer: no copy per block
    with open(out, "wb") as fh:
        while got := resp.readinto(buf):
            fh.write(buf[:got])
            n += got
    return n


class RssPeak:
    """Peak RSS of a process (sampled every 2 ms) while a block runs."""

    def __init__(self, proc: psutil.Process):
        self.proc, self.samples, self.stop = proc, [], threading.Event()

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.002)

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()
        self.peak = max(self.samples + [self.base])


# --- the run ------------------------------------------------------------------------------

def setup_db(url: str, env: dict) -> str:
    """Migrate the scratch database, create product + admin, return an admin token."""
    code = (
        "from web import create_app\n"
        "from flask_migrate import upgrade\n"
        "from web.services import products, users\n"
        "from web.services.audit import CLI\n"
        "from web.auth import issue_token\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    upgrade()\n"
        "    products.create_product('BENCH', 'bench', [{'step': 'FLASH', 'name': 'Flash',"
        " 'requires_firmware': True}], CLI)\n"
        "    u = users.create_user('bench-admin', 'bench-password-123', 'admin', CLI)\n"
        "    print(issue_token(u.id, u.username, 'admin')[0])\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


DRAIN_APP = """
import os


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET":  # serve the image as plainly as WSGI allows
        path = os.environ["NH_BENCH_IMAGE"]
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(os.path.getsize(path)))])
        return environ["wsgi.file_wrapper"](open(path, "rb"), 1 << 20)
    read, n = environ["wsgi.input"].read, 0
    while chunk := read(1 << 20):
        n += len(chunk)
    start_response("201 Created", [("Content-Type", "application/json")])
    return [b'{"size": %d}' % n]
"""


def gunicorn(env: dict, port: int, log_dir: Path, name: str,
             app: str = "web:create_app()") -> tuple[Proc, psutil.Process]:
    p = Proc([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
              "--timeout", "600", app], env, log_dir / f"{name}.log")
    wait_http("127.0.0.1", port, "/healthz")
    children = psutil.Process(p.pid).children()
    return p, children[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    size = args.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="nh-fw-bench-"))
    db = f"nhbench_fw_{os.getpid()}"
    admin = psycopg.connect(PG_ADMIN, autocommit=True)
    admin.execute(f'CREATE DATABASE "{db}"')
    procs: list[Proc] = []
    results: dict = {"size_mib": args.size_mib, "rounds": args.rounds,
                     "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    try:
        src = work / "image.bin"
        sha = make_image(src, size)
        base_env = dict(os.environ, **AWS, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING",
                        NEUROHUB_DATA_DIR=str(work / "data"),
                        DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + f"/{db}",
                        SECRET_KEY="bench-secret-key-not-for-production-0123456789abcdef",
                        MAX_FIRMWARE_BYTES=str(size + MIB))
        for k in ("REDIS_URL", "CELERY_BROKER_URL", "USE_S3", "AWS_ENDPOINT_URL"):
            base_env.pop(k, None)
        token = setup_db(base_env["DATABASE_URL"], base_env)

        moto_port = free_port()
        procs.append(Proc([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1",
                           "-p", str(moto_port)], dict(os.environ, **AWS), work / "moto.log"))
        wait_http("127.0.0.1", moto_port, "/")
        endpoint = f"http://127.0.0.1:{moto_port}"
        import boto3
        from botocore.config import Config
        s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket="nh-bench")

        local_port, s3_port = free_port(), free_port()
        web_local, worker_local = gunicorn(base_env, local_port, work, "web-local")
        procs.append(web_local)
        s3_env = dict(base_env, USE_S3="true", S3_BUCKET="nh-bench", AWS_ENDPOINT_URL=endpoint,
                      AWS_REGION="us-east-1")
        web_s3, _ = gunicorn(s3_env, s3_port, work, "web-s3")
        procs.append(web_s3)
        (work / "nh_drain.py").write_text(DRAIN_APP)
        drain_port = free_port()
        drain, _ = gunicorn(dict(base_env, PYTHONPATH=f"{ROOT}:{work}", NH_BENCH_IMAGE=str(src)),
                            drain_port, work, "drain", "nh_drain:app")
        procs.append(drain)
        warm = work / "warm.bin"  # first requests pay for imports, mappers and connections
        warm.write_bytes(b"warm-up" * 1000)
        for port in (local_port, s3_port):
            fw = post_multipart(port, token, {"product": "BENCH", "version": f"0.0.{port}"},
                                warm)
            get_to_file(port, f"/api/v1/firmware/{fw['id']}/download", token, work / "w")

        rows: dict[str, list[float]] = {k: [] for k in (
            "cp", "cp+sync", "http_drain", "local_upload", "cp_download", "http_static",
            "local_download", "boto3_upload_file",
            "s3_upload", "boto3_download_file", "s3_download")}
        rss = []
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            dst = work / f"cp-{r}"
            dst.mkdir()
            rows["cp"].append(timed(lambda: subprocess.run(["cp", str(src), str(dst / "a")],
                                                           check=True)))
            rows["cp+sync"].append(timed(lambda: subprocess.run(
                f"cp '{src}' '{dst}/b' && sync '{dst}/b'", shell=True, check=True)))
            rows["http_drain"].append(timed(lambda: post_multipart(
                drain_port, token, {"product": "BENCH", "version": "x"}, src)))
            with RssPeak(worker_local) as mem:
                t = time.perf_counter()
                fw = post_multipart(local_port, token, {"product": "BENCH",
                                                        "version": f"1.0.{r}",
                                                        "sha256": sha}, src)
                rows["local_upload"].append(time.perf_counter() - t)
            rss.append({"base_mib": mem.base / MIB, "peak_mib": mem.peak / MIB,
                        "growth_mib": (mem.peak - mem.base) / MIB})
            stored = work / "data" / "firmware" / fw["storage_key"]
            rows["cp_download"].append(timed(lambda: subprocess.run(
                ["cp", str(stored), str(dst / "c")], check=True)))
            rows["http_static"].append(timed(lambda: get_to_file(drain_port, "/", None,
                                                                 dst / "g")))
            path = f"/api/v1/firmware/{fw['id']}/download"
            rows["local_download"].append(timed(lambda: get_to_file(
                local_port, path, token, dst / "d")))
            assert hashlib.sha256((dst / "d").read_bytes()).hexdigest() == sha
            # S3
            rows["boto3_upload_file"].append(timed(lambda: s3.upload_file(
                str(src), "nh-bench", f"yardstick/{r}.bin")))
            t = time.perf_counter()
            fw_s3 = post_multipart(s3_port, token, {"product": "BENCH", "version": f"2.0.{r}",
                                                    "sha256": sha}, src)
            rows["s3_upload"].append(time.perf_counter() - t)
            rows["boto3_download_file"].append(timed(lambda: s3.download_file(
                "nh-bench", f"yardstick/{r}.bin", str(dst / "e"))))
            rows["s3_download"].append(timed(lambda: get_to_file(
                s3_port, f"/api/v1/firmware/{fw_s3['id']}/download", token, dst / "f")))
            assert hashlib.sha256((dst / "f").read_bytes()).hexdigest() == sha
            shutil.rmtree(dst)

        mibs = {k: args.size_mib / statistics.median(v) for k, v in rows.items()}
        results["mib_per_s"] = {k: round(v, 1) for k, v in mibs.items()}
        results["seconds"] = {k: [round(x, 3) for x in v] for k, v in rows.items()}
        results["ratios"] = {
            "local_upload/cp": round(mibs["local_upload"] / mibs["cp"], 2),
            "local_upload/cp+sync": round(mibs["local_upload"] / mibs["cp+sync"], 2),
            "local_upload/http_drain": round(mibs["local_upload"] / mibs["http_drain"], 2),
            "local_download/cp": round(mibs["local_download"] / mibs["cp_download"], 2),
            "local_download/http_static": round(mibs["local_download"] / mibs["http_static"], 2),
            "s3_upload/boto3_upload_file": round(mibs["s3_upload"] / mibs["boto3_upload_file"],
                                                 2),
            "s3_download/boto3_download_file": round(
                mibs["s3_download"] / mibs["boto3_download_file"], 2)}
        results["upload_rss"] = {"rounds": rss,
                                 "max_growth_mib": round(max(x["growth_mib"] for x in rss), 1)}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out / f"firmware-{stamp}.json").write_text(json.dumps(results, indent=2))
        print(f"\nfirmware image {args.size_mib} MiB, median of {args.rounds} round(s), MiB/s")
        for k, v in results["mib_per_s"].items():
            print(f"  {k:<22} {v:>8.1f}")
        print("ratios (ours / yardstick):")
        for k, v in results["ratios"].items():
            print(f"  {k:<34} {v:.2f}x")
        print(f"gunicorn worker RSS during the {args.size_mib} MiB upload: "
              f"growth max {results['upload_rss']['max_growth_mib']} MiB "
              f"(peak {max(x['peak_mib'] for x in rss):.1f} MiB)")
        print(f"results: {out / f'firmware-{stamp}.json'}")
        return 0
    finally:
        for p in reversed(procs):
            p.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
