"""The HTML report: its numbers against values computed here from the records, its
self-containment, and how it renders in headless Chromium (console errors, images,
network requests) driven through the DevTools protocol."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import types
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from toys import Counting

from workbench import IntervalResult, hookimpl
from workbench.cli import main
from workbench.outputs.files import write_json
from workbench.outputs.report import ReportError, build_report, fmt
from workbench.plugin.registry import build_registry
from workbench.run.runner import run
from workbench.scoring import score
from workbench.spec import parse_spec


# -- a synthetic results folder with known content ------------------------------------
def synthetic_run(folder: Path, n_trials: int = 30, per_trial: int = 10, n_failed: int = 2,
                  seed: int = 1) -> dict:
    """results.json + timings.json shaped as the runner writes them, with known truth."""
    rng = np.random.default_rng(seed)
    records = []
    for trial in range(n_trials):
        mu = float(rng.uniform(0.1, 3.0))
        for pe in range(per_trial):
            mu_hat = float(mu + rng.normal(0, 0.3))
            half = 0.3 * float(rng.uniform(0.8, 1.2))
            records.append({
                "trial": trial, "pe": pe, "seed": int(rng.integers(2**31)), "mu_true": mu,
                "nuisances_true": {"tes": 1.0}, "mu_hat": mu_hat, "mu16": mu_hat - half,
                "mu84": mu_hat + half, "covered": bool(mu_hat - half <= mu <= mu_hat + half),
                "nuisances_fit": {"tes": float(rng.normal(0, 1)), "jes": float(rng.normal(0.5, 1))},
                "nuisance_errors": {"tes": 0.9, "jes": 1.0}, "n_events": 1000, "info": {},
            })
    for i in range(n_failed):
        records[3 * i + 1] = {k: records[3 * i + 1][k] for k in
                              ("trial", "pe", "seed", "mu_true", "nuisances_true")}
        records[3 * i + 1]["error"] = f"ValueError: fit <failed> number {i}"
    ok = [r for r in records if "error" not in r]
    summary = {"n_pseudo_experiments": len(records), "n_failed": n_failed, "complete": True,
               **score([r["mu_true"] for r in ok], [r["mu16"] for r in ok],
                       [r["mu84"] for r in ok], [r["mu_hat"] for r in ok]).as_dict()}
    per_pe = [{"sample": float(rng.uniform(0.1, 0.2)), "inference": float(rng.lognormal(-1, 0.5)),
               "inference.fit": float(rng.uniform(0.01, 0.02))} for _ in records]
    spec = {"name": "synthetic <run>", "seed": seed, "data": {"generator": {"name": "toy"}},
            "interval": {"name": "toy-interval", "params": {}},
            "pseudo_experiments": {"trials": n_trials, "per_trial": per_trial,
                                   "mu_range": [0.1, 3.0], "randomise": ["tes"], "fixed": {}},
            "scoring": {"eps": 1e-3, "confidence_level": 0.6827}}
    write_json(folder / "results.json", {"spec": spec, "summary": summary,
                                         "pseudo_experiments": records})
    write_json(folder / "timings.json", {
        "training": {"generate": 1.5, "classifier_fit": 12.25}, "per_pe": per_pe,
        "inference_median_s": float(np.median([t["inference"] for t in per_pe])),
        "wall_s": 42.0, "executor": "inline", "workers": None, "resumed_pes": 0,
        "machine": {"python": "3.11", "cpus": 2}})
    return {"records": records, "ok": ok, "per_pe": per_pe}


class CellParser(HTMLParser):
    """Text of every element with an id, and the src of every img/script/link."""

    def __init__(self):
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.sources: list[tuple[str, str]] = []
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append((tag, attrs[key]))
        if tag in ("img", "br", "meta", "link", "input"):
            return
        self._open.append(attrs.get("id"))
        if attrs.get("id"):
            self.by_id[attrs["id"]] = ""

    def handle_endtag(self, tag):
        if tag not in ("img", "br", "meta", "link", "input") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for element_id in self._open:
            if element_id:
                self.by_id[element_id] += data


def parse(path: Path) -> CellParser:
    parser = CellParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    truth = synthetic_run(folder)
    return folder, truth, build_report(folder)


def test_score_table_matches_the_records(synthetic):
    folder, truth, report = synthetic
    cells = parse(report).by_id
    ok = truth["ok"]
    coverage = np.mean([r["mu16"] <= r["mu_true"] <= r["mu84"] for r in ok])
    width = np.mean([r["mu84"] - r["mu16"] for r in ok])
    sigma68 = np.sqrt(0.6827 * 0.3173 / len(ok))
    assert float(cells["score-coverage-1"]) == pytest.approx(coverage, rel=5e-4)
    assert float(cells["score-width-1"]) == pytest.approx(width, rel=5e-4)
    assert int(cells["score-n_failed-1"]) == 2
    assert int(cells["score-n_pseudo_experiments-1"]) == len(truth["records"])
    lo, hi = (float(x) for x in cells["score-band-1"].split("–"))
    assert lo == pytest.approx(0.6827 - 2 * sigma68, rel=5e-4)
    assert hi == pytest.approx(0.6827 + 2 * sigma68, rel=5e-4)
    inside = lo <= coverage <= hi
    assert ("inside the band" in cells["score-coverage-2"]) == inside
    summary = json.loads((folder / "results.json").read_text())["summary"]
    for key in ("score", "rmse", "mae"):
        assert cells[f"score-{key}-1"] == fmt(summary[key])


def test_coverage_by_mu_table_counts_every_successful_pe(synthetic):
    _, truth, report = synthetic
    cells = parse(report).by_id
    rows = sorted({k.split("-")[3] for k in cells if k.startswith("coverage-by-mu-")
                   and k.count("-") == 4}, key=int)
    assert len(rows) == 10
    mu = np.array([r["mu_true"] for r in truth["ok"]])
    cov = np.array([r["mu16"] <= r["mu_true"] <= r["mu84"] for r in truth["ok"]])
    total = 0
    for i in rows:
        lo, hi = float(cells[f"coverage-by-mu-{i}-0"]), float(cells[f"coverage-by-mu-{i}-1"])
        n, k = int(cells[f"coverage-by-mu-{i}-2"]), int(cells[f"coverage-by-mu-{i}-3"])
        # bin edges are shown to 4 digits: count the PEs by the printed edges
        sel = (mu >= lo - 1e-3) & (mu < hi - 1e-3) if i != rows[-1] else (mu >= lo - 1e-3)
        assert n == sel.sum() and k == cov[sel].sum()
        if n:
            c = k / n
            assert float(cells[f"coverage-by-mu-{i}-4"]) == pytest.approx(c, rel=5e-4)
            # Clopper-Pearson from the beta quantiles (independent of hist's implementation)
            from scipy.stats import beta

            a = (1 - 0.6827) / 2
            lo_cp = beta.ppf(a, k, n - k + 1) if k > 0 else 0.0
            hi_cp = beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
            assert float(cells[f"coverage-by-mu-{i}-5"]) == pytest.approx(lo_cp, rel=5e-4, abs=1e-9)
            assert float(cells[f"coverage-by-mu-{i}-6"]) == pytest.approx(hi_cp, rel=5e-4, abs=1e-9)
        total += n
    assert total == len(truth["ok"])


def test_timings_and_failures_are_reported(synthetic):
    _, truth, report = synthetic
    cells = parse(report).by_id
    inference = np.array([t["inference"] for t in truth["per_pe"]])
    assert float(cells["per-pe-inference-2"]) == pytest.approx(np.median(inference), rel=5e-4)
    assert float(cells["per-pe-inference-3"]) == pytest.approx(np.mean(inference), rel=5e-4)
    assert float(cells["per-pe-inference-5"]) == pytest.approx(np.percentile(inference, 95), rel=5e-4)
    assert float(cells["per-pe-inference.fit-1"]) == len(truth["per_pe"])
    assert float(cells["training-classifier_fit-1"]) == 12.25
    text = report.read_text()
    # error messages and names are escaped, not injected as markup
    assert "fit &lt;failed&gt; number 1" in text and "<failed>" not in text
    assert "synthetic &lt;run&gt;" in text


def test_report_is_self_contained(synthetic):
    _, _, report = synthetic
    text = report.read_text()
    parser = parse(report)
    assert not re.search(r"https?://|<script|<link|@import|url\(", text)
    images = [src for tag, src in parser.sources if tag == "img"]
    assert len(images) == 3 and {tag for tag, _ in parser.sources} == {"img"}
    import matplotlib.image

    for src in images:
        assert src.startswith("data:image/png;base64,")
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01


def test_missing_results_file_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ReportError, match="results.json does not exist"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "results.json" in capsys.readouterr().err


# -- a real run through the runner and the CLI ------------------------------------
class NoisyCounting(Counting):
    """Counts every event; reports a background-normalisation 'pull' for the pull plot."""

    def predict(self, events):
        n = len(events)
        mu_hat = (n - self.b) / self.s
        half = np.sqrt(n) / self.s
        return IntervalResult(mu_hat, mu_hat - half, mu_hat + half,
                              nuisances={"bkg_norm": (n - self.b - self.s) / np.sqrt(n)},
                              nuisance_errors={"bkg_norm": 1.0})


toy = types.ModuleType("report_toy")
toy.register_intervals = hookimpl(lambda register: register("report-counting", NoisyCounting))


def test_cli_report_of_a_real_run(tmp_path, capsys):
    spec = parse_spec({
        "name": "report-run", "seed": 4,
        "data": {"generator": "simulator", "train": {"htautau": 10},
                 "holdout": {"htautau": 2000, "ztautau": 8000, "ttbar": 1000, "diboson": 300},
                 "test_pool": {"htautau": 2000, "ztautau": 8000, "ttbar": 1000, "diboson": 300},
                 "luminosity_fb": 0.005},
        "pseudo_experiments": {"trials": 6, "per_trial": 4, "randomise": []},
        "interval": "report-counting",
        "output": {"directory": str(tmp_path), "plots": False, "progress": False},
    })
    result = run(spec, build_registry(extra_plugins={"report_toy": toy}))
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r" / "page.html")]) == 0
    assert "page.html" in capsys.readouterr().out
    cells = parse(tmp_path / "r" / "page.html").by_id
    coverage = np.mean([r["covered"] for r in result.records])
    assert float(cells["score-coverage-1"]) == pytest.approx(coverage, rel=5e-4)
    median = np.median([t["inference"] for t in result.timings["per_pe"]])
    assert float(cells["per-pe-inference-2"]) == pytest.approx(median, rel=5e-4)
    assert set(json.loads((tmp_path / "timings.json").read_text())["training"]) <= {
        k.split("-", 1)[1].rsplit("-", 1)[0] for k in cells if k.startswith("training-")}


# -- headless Chromium through the DevTools protocol -------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")


class DevTools:
    """A minimal DevTools-protocol client over a stdlib websocket (text frames only)."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", ws_url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools handshake refused: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x80 | opcode])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def receive(self) -> dict:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the connection")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send_frame(0x1, json.dumps({"id": self.next_id, "method": method,
                                          "params": params}).encode())
        while True:
            msg = self.receive()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, msg in enumerate(self.events):
            if msg.get("method") == method:
                return msg
        while time.monotonic() < deadline:
            msg = self.receive()
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} within {timeout} s")


def render_in_chromium(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` in headless Chromium; return console errors, requests and DOM facts."""
    profile = tmp_path / "chromium-profile"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools started")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = m and int(m.group(1))
        assert port, "chromium did not report its DevTools port within 60 s"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        targets = json.loads(opener.open(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        page_target = next(t for t in targets if t.get("type") == "page")
        dt = DevTools(page_target["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Network", "Page"):
            dt.call(f"{domain}.enable")
        dt.events.clear()
        dt.call("Page.navigate", url=page.resolve().as_uri())
        dt.wait_for("Page.loadEventFired")
        facts = dt.call("Runtime.evaluate", returnByValue=True, expression="""({
            images: Array.from(document.images).map(i => [i.complete, i.naturalWidth]),
            coverage: (document.getElementById('score-coverage-1') || {}).textContent,
            title: document.title})""")["result"]["value"]
        dt.call("Runtime.evaluate", expression="1")  # drain events queued before the load
        dt.sock.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    errors = []
    requests = []
    for msg in dt.events:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
    return {"errors": errors, "requests": requests, **facts}


@needs_chromium
def test_devtools_harness_sees_console_errors_and_broken_images(tmp_path):
    """Negative control: the Chromium check must catch what it is meant to catch."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body>"
                   "<img src='missing.png'><script>console.error('boom-console');"
                   "undefined_function();</script></body></html>")
    out = render_in_chromium(bad, tmp_path)
    assert any("boom-console" in e for e in out["errors"])
    assert any("undefined_function" in e or "Uncaught" in e for e in out["errors"])
    assert out["images"] == [[True, 0]]


@needs_chromium
def test_report_renders_in_headless_chromium(synthetic, tmp_path):
    _, truth, report = synthetic
    out = render_in_chromium(report, tmp_path)
    assert out["errors"] == []
    # nothing but the page itself and its data: URIs is requested
    assert all(u.startswith(("file:", "data:")) for u in out["requests"]), out["requests"]
    assert len(out["images"]) == 3 and all(done and width > 100 for done, width in out["images"])
    coverage = np.mean([r["mu16"] <= r["mu_true"] <= r["mu84"] for r in truth["ok"]])
    assert float(out["coverage"]) == pytest.approx(coverage, rel=5e-4)
    assert out["title"] == "workbench report: synthetic <run>"
