"""Container DNS keeps answering while containers start and stop (issue #15).

The stack test stops, starts and restarts containers while the workers look up `redis` and
`postgres`. With Debian 12's netavark + aardvark-dns 1.4 the network's DNS server stopped answering
for up to 7 s during such churn, and a worker blocked in getaddrinfo past its SIGTERM grace. The
podman configuration the deploy tests use (deploy/podman/containers.conf) must not do that: a probe
container asks for a peer's name 50 times a second, straight over UDP with a 0.2 s timeout, while
containers come and go; the longest stretch without an answer must stay under a second."""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from tests.deploy.stack import ROOT, base_image, podman, podman_env

pytestmark = pytest.mark.deploy

PROBE = r"""
import json, random, socket, struct, sys, time
def ask(name, server):
    tid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + b"".join(
        bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        s.sendto(packet, (server, 53))
        return s.recv(512)[:2] == packet[:2]
    except OSError:
        return False
    finally:
        s.close()
server = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
end, last_ok, worst, asked = time.monotonic() + float(sys.argv[2]), time.monotonic(), 0.0, 0
while time.monotonic() < end:
    asked += 1
    if ask(sys.argv[1], server):
        last_ok = time.monotonic()
    worst = max(worst, time.monotonic() - last_ok)
    time.sleep(0.02)
print(json.dumps({"asked": asked, "longest_silence_s": round(worst, 2)}))
"""


@pytest.mark.timeout(300)
def test_dns_answers_while_containers_come_and_go():
    image, net = base_image(), f"nhdns{uuid.uuid4().hex[:6]}"
    names = {role: f"{net}-{role}" for role in ("peer", "probe")}
    podman("network", "create", net)
    try:
        for name in names.values():
            podman("run", "-d", "--name", name, "--network", net, image, "sleep", "600")
        probe = subprocess.Popen(
            ["podman", "exec", names["probe"], "python3", "-c", PROBE, names["peer"], "45"],
            stdout=subprocess.PIPE, text=True, env=podman_env())
        time.sleep(2)
        for round_ in range(2):  # what up/stop/restart/down do to the network, several times over
            churn = [f"{net}-c{round_}{i}" for i in range(6)]
            for name in churn:
                podman("run", "-d", "--name", name, "--network", net, image, "sleep", "600")
            for name in churn:
                podman("stop", "-t", "1", name, check=False)  # sleep ignores SIGTERM: killed
                podman("rm", name, check=False)
        out, _ = probe.communicate(timeout=120)
        figures = json.loads(out)
        assert figures["asked"] > 500, figures
        assert figures["longest_silence_s"] < 1.0, figures
    finally:
        podman("rm", "-f", "-t", "0", *names.values(), check=False)
        podman("network", "rm", "-f", net, check=False)
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "deploy_dns.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
