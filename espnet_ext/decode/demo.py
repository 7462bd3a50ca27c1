"""The live demo: a local web page over a loaded `Transcriber` (what `espnet-lora-demo` serves).

The page (one HTML file with its script inline: nothing is fetched from the internet) uploads a file or
records from the microphone (the browser's MediaRecorder, WebM/Opus, which PyAV decodes) and shows what
espnet-lora-transcribe prints: the language posteriors over time with the segments drawn under them, each
segment's routing and text, and the transcript. The server is the standard library's: GET / is the page,
POST /api/transcribe takes the audio as the request body (its file name in X-Filename) and answers the
FileResult as JSON, or {"error": ...} with status 400 for audio it cannot read. Requests are served one
at a time (one model in memory), each without reloading anything.
"""
import json
import logging
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from espnet_ext.data.audio import AudioError

log = logging.getLogger(__name__)
MAX_UPLOAD_BYTES = 200 * 1024 * 1024

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Multilingual LoRA ASR</title>
<style>
 body { font-family: sans-serif; max-width: 900px; margin: 2em auto; color: #222; }
 table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
 .low { color: #a00; } #status { color: #555; margin-left: 1em; } svg { border: 1px solid #ddd; }
</style></head>
<body>
<h1>Multilingual LoRA ASR</h1>
<p>System: <code>__SYSTEM__</code>. A language-ID head on the encoder routes each segment of the recording
to its language's adapter (a language without adapter: the base model).</p>
<p><input type="file" id="file" accept="audio/*"> <button id="send">Transcribe</button>
 <button id="record">Record</button><span id="status"></span></p>
<section id="result" hidden>
 <p>Language: <b id="lang"></b> &middot; <span id="routing"></span></p>
 <svg id="timeline" width="860" height="220" role="img" aria-label="language posteriors over time"></svg>
 <table><thead><tr><th>start (s)</th><th>end (s)</th><th>language</th><th>confidence</th><th>text</th></tr></thead>
 <tbody id="segments"></tbody></table>
 <p>Transcript: <span id="transcript"></span></p>
</section>
<script>
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const STEP_S = __STEP__;
const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

function el(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawTimeline(r) {
  const svg = $("timeline"), W = 860, H = 170, left = 40;
  svg.replaceChildren();
  const x = (t) => left + (W - left - 10) * t / Math.max(r.duration, 1e-3);
  const y = (p) => 10 + (H - 20) * (1 - p);
  svg.append(el("text", {x: 2, y: y(1) + 4, "font-size": 10}, "1.0"), el("text", {x: 2, y: y(0), "font-size": 10}, "0.0"));
  r.languages.forEach((lang, j) => {
    const points = r.timeline.map((row, i) => `${x(i * STEP_S)},${y(row[j])}`).join(" ");
    svg.append(el("polyline", {points, fill: "none", stroke: COLORS[j % COLORS.length], "stroke-width": 2}));
    svg.append(el("text", {x: left + 50 * j, y: 215, fill: COLORS[j % COLORS.length], "font-size": 12}, lang));
  });
  r.segments.forEach((s) => {
    const j = r.languages.indexOf(s.lang);
    svg.append(el("rect", {x: x(s.start), y: H + 5, width: Math.max(1, x(s.end) - x(s.start)), height: 18,
                           fill: COLORS[j % COLORS.length], opacity: s.low_confidence ? 0.35 : 0.8}));
    svg.append(el("text", {x: x(s.start) + 3, y: H + 18, "font-size": 11, fill: "#fff"}, s.lang));
    svg.append(el("line", {x1: x(s.start), x2: x(s.start), y1: 10, y2: H + 23, stroke: "#888", "stroke-dasharray": 3}));
  });
}

function show(r) {
  $("result").hidden = false;
  $("lang").textContent = r.lang;
  $("routing").textContent = r.routing;
  $("transcript").textContent = r.text;
  const rows = r.segments.map((s) => {
    const tr = document.createElement("tr");
    if (s.low_confidence) tr.className = "low";
    const lang = s.lang + (s.low_confidence ? " (unknown / low confidence)" : "");
    for (const v of [s.start.toFixed(2), s.end.toFixed(2), lang, s.confidence.toFixed(2), s.text]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    return tr;
  });
  $("segments").replaceChildren(...rows);
  drawTimeline(r);
}

async function send(blob, name) {
  status("transcribing " + name + " ...");
  const reply = await fetch("/api/transcribe", {method: "POST", body: blob,
                                                headers: {"X-Filename": encodeURIComponent(name)}});
  const r = await reply.json();
  if (!reply.ok) { status(r.error); return; }
  status("done: " + name);
  show(r);
}

$("send").onclick = () => {
  const file = $("file").files[0];
  if (!file) { status("choose an audio file first"); return; }
  send(file, file.name);
};

let recorder = null;
$("record").onclick = async () => {
  if (recorder) { recorder.stop(); return; }
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    $("record").textContent = "Record";
    send(new Blob(chunks, {type: "audio/webm"}), "recording.webm");
  };
  recorder.start();
  $("record").textContent = "Stop";
  status("recording ... press Stop when done");
};
</script>
</body></html>
"""


def page(system: str) -> bytes:
    """The demo page for the system named `system` (shown on it)."""
    from espnet_ext.decode.service import TIMELINE_STEP_S

    return PAGE.replace("__SYSTEM__", system).replace("__STEP__", repr(TIMELINE_STEP_S)).encode("utf-8")


def make_server(transcriber, system: str, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving: call serve_forever) for the page and its API over `transcriber`."""
    html, lock = page(system), threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._reply(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._reply(200, html, "text/html; charset=utf-8")
            else:
                self._json(404, {"error": f"no page {self.path}; the demo is at /"})

        def do_POST(self):
            if self.path != "/api/transcribe":
                self._json(404, {"error": f"no API {self.path}; POST audio to /api/transcribe"})
                return
            size = int(self.headers.get("Content-Length") or 0)
            name = Path(unquote(self.headers.get("X-Filename") or "upload.wav")).name
            if not 0 < size <= MAX_UPLOAD_BYTES:
                self._json(400, {"error": f"{name}: empty or over {MAX_UPLOAD_BYTES >> 20} MB; upload an audio file"})
                return
            body = self.rfile.read(size)
            with tempfile.TemporaryDirectory() as tmp, lock:
                path = Path(tmp) / name
                path.write_bytes(body)
                try:
                    result = transcriber.transcribe_file(path)
                except AudioError as err:
                    self._json(400, {"error": str(err).replace(str(path), name) + " (upload a readable audio file)"})
                    return
            result.file = name
            self._json(200, result.as_dict())

        def log_message(self, fmt, *args):
            log.info("%s %s", self.address_string(), fmt % args)

    return ThreadingHTTPServer((host, port), Handler)
