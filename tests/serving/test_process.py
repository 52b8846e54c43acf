"""``persona serve`` as a process: no acknowledged write is lost to SIGKILL, and SIGTERM
finishes the reply in flight, then exits cleanly with the store closed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from persona_sdk.serving.launch import persona_command, spawn

pytestmark = pytest.mark.slow
SERVE = ["--no-auth", "--threads", "1", "--drain", "20"]


def start(data, model):
    return spawn(data, ["--model", str(model)], SERVE, timeout=120)


def writer(url, user, acked, stop):
    with httpx.Client(base_url=url, timeout=10) as http:
        i = 0
        while not stop.is_set():
            try:
                r = http.post(
                    f"/v1/users/{user}/rules", json={"text": f"Rule number {i} for {user}."}
                )
            except httpx.TransportError:
                return
            if r.status_code == 200:
                acked.append(r.json()["results"][0]["id"])
            i += 1


def test_sigkill_loses_no_acknowledged_write_and_sigterm_drains(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    proc, url = start(data, tiny_model_dir)
    acked = {u: [] for u in ("u1", "u2")}
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(url, u, acked[u], stop)) for u in acked]
    for t in threads:
        t.start()
    while sum(map(len, acked.values())) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    stop.set()
    for t in threads:
        t.join()

    proc, url = start(data, tiny_model_dir)
    with httpx.Client(base_url=url, timeout=60) as http:
        for user, texts in acked.items():
            rules = http.get(f"/v1/users/{user}/rules?all=true").json()["results"]
            assert set(texts) <= {r["id"] for r in rules}
        body = {
            "model": "persona",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 60,
            "stream": True,
            "user": "u1",
        }
        lines = []
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line and not lines:
                    proc.send_signal(signal.SIGTERM)  # mid-stream
                    time.sleep(0.5)
                    with pytest.raises(httpx.TransportError):
                        httpx.get(url + "/health", timeout=2)  # no longer admitting
                lines.append(line)
    assert "data: [DONE]" in lines
    chunks = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained on
    log = proc.stdout.read().decode()
    assert "Application shutdown complete" in log and "Traceback" not in log, log

    doctor = subprocess.run(
        persona_command("--data", str(data), "doctor", "--json"),
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["ok"], doctor.stdout
    assert all(r.startswith("index:") for r in report["repairs"])  # derived files only


@pytest.mark.integration  # the replicas are Ray workers: they load the default embedder
def test_serve_replicas_from_the_cli_answers_and_stops_on_sigterm(tmp_path, tiny_model_dir):
    pytest.importorskip("ray")
    proc, url = spawn(tmp_path / "data", ["--model", str(tiny_model_dir)],
                      ["--no-auth", "--replicas", "1", "--threads", "1"], timeout=300)  # fmt: skip
    try:
        body = {"model": "persona", "user": "ann", "max_tokens": 3, "temperature": 0,
                "messages": [{"role": "user", "content": "Hi"}]}  # fmt: skip
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 200 and r.headers["X-Persona-Replica"]
        assert r.json()["choices"][0]["message"]["role"] == "assistant"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0


@pytest.mark.parametrize("args, message", [
    (["--replicas", "2", "--engine", "openai://127.0.0.1:9"], "--replicas or --engine"),
    (["--max-replicas", "3"], "--max-replicas needs --replicas"),
])  # fmt: skip
def test_serve_refuses_contradictory_scale_options(tmp_path, args, message):
    done = subprocess.run(persona_command("--data", str(tmp_path), "serve", *args),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and message in done.stderr + done.stdout
