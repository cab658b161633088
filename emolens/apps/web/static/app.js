// emolens web page: live webcam recognition — in this browser (onnxruntime-web, nothing leaves the
// page) or on the server (frames over a WebSocket) — and photo/video upload: to the server, or, in a
// static copy (emolens export-web), photos recognised in this browser.
"use strict";

const API = "/api/v1";
const FRAME_WIDTH = 640; // frames are downscaled to this width before analysis
const JPEG_QUALITY = 0.7;
const COLORS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];
const MODES = { browser: "in this browser", server: "on the server" };

const $ = (id) => document.getElementById(id);
const pct = (p) => `${Math.round(p * 100)}%`;
const colorFor = (face) => COLORS[((face.face_id ?? 0) % COLORS.length + COLORS.length) % COLORS.length];

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// For automation and tests: the mode ("browser" | "server", null while loading), the latest result
// (Python's ImageResult.to_dict() shape), frames analysed and the current frame rate.
window.emolens = { mode: null, lastResult: null, frames: 0, fps: 0, engine: null, error: null };

// ---------------------------------------------------------------- live camera

const live = {
  section: $("live"),
  video: $("video"),
  overlay: $("overlay"),
  capture: document.createElement("canvas"),
  engine: null, // in-page recognition, once its assets have loaded
  server: false, // whether a server is there to analyse frames (not in a static export)
  ws: null,
  stream: null,
  loop: 0, // bumped to stop the running in-page loop
  inFlight: false, // server mode: at most one frame is ever waiting for its reply
  sentAt: 0,
  replies: [], // result timestamps of the last second, for the FPS figure
  result: null,
  frames: 0,
};

function setLiveStatus(text, state) {
  $("live-status").textContent = text;
  if (state) live.section.dataset.state = state;
}

function idleText() {
  return window.emolens.mode === "browser"
    ? "Camera off. Frames are analyzed in this browser and never leave it."
    : "Camera off. Frames are analyzed on this server and not stored.";
}

function setMode(mode) {
  const running = Boolean(live.stream);
  if (running) stopLoop();
  window.emolens.mode = mode;
  live.section.dataset.mode = mode;
  $(`mode-${mode}`).checked = true;
  $("mode-label").textContent = MODES[mode];
  live.replies = [];
  showModel();
  if (running) startLoop();
  else setLiveStatus(idleText());
}

async function startLive() {
  $("start").disabled = true;
  await ready; // the mode is chosen once the in-page models have loaded (or failed to)
  if (!window.emolens.mode) return;
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (err) {
    setLiveStatus(`Camera unavailable: ${err.message}`, "error");
    $("start").disabled = false;
    return;
  }
  live.video.srcObject = live.stream;
  live.section.dataset.camera = "on";
  await live.video.play();
  $("stop").disabled = false;
  startLoop();
  requestAnimationFrame(drawOverlay);
}

function startLoop() {
  if (window.emolens.mode === "browser") {
    setLiveStatus("Recognizing in this browser: no frame, face or result leaves the page", "streaming");
    browserLoop(++live.loop);
  } else {
    openSocket();
  }
}

function stopLoop() {
  live.loop += 1;
  const ws = live.ws;
  live.ws = null;
  ws?.close();
  live.inFlight = false;
  live.result = null;
}

function stopLive(message = "Camera off") {
  stopLoop();
  live.stream?.getTracks().forEach((track) => track.stop());
  live.stream = null;
  live.section.dataset.camera = "off";
  live.replies = [];
  $("fps").textContent = "–";
  $("live-faces").replaceChildren();
  $("start").disabled = false;
  $("stop").disabled = true;
  setLiveStatus(message === "Camera off" ? idleText() : message, "idle");
  drawOverlay();
}

/** The current video frame, downscaled to FRAME_WIDTH, drawn into the capture canvas. */
function grabFrame() {
  const { video, capture } = live;
  const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
  capture.width = Math.round(video.videoWidth * scale);
  capture.height = Math.round(video.videoHeight * scale);
  const ctx = capture.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, capture.width, capture.height);
  return ctx;
}

/** Resolves when the camera shows a frame after this call (each frame is analysed at most once). */
function nextVideoFrame() {
  return new Promise((resolve) => {
    if (live.video.requestVideoFrameCallback) live.video.requestVideoFrameCallback(() => resolve());
    else setTimeout(resolve, 0);
  });
}

async function browserLoop(token) {
  const { fromRGBA } = await import("./inpage/imageops.mjs");
  const tracker = live.engine.tracker();
  while (live.loop === token) {
    const next = nextVideoFrame(); // asked before analysing, so a frame that arrives meanwhile is not missed
    if (live.video.videoWidth) {
      const ctx = grabFrame();
      const { width, height } = ctx.canvas;
      const start = performance.now();
      try {
        const result = await live.engine.analyze(fromRGBA(ctx.getImageData(0, 0, width, height).data, width, height), tracker);
        if (live.loop !== token) return;
        onResult(result, performance.now() - start);
      } catch (err) {
        if (live.loop === token) stopLive(`In-browser recognition failed: ${err.message}`);
        return;
      }
    }
    await next;
  }
}

function openSocket() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${API}/stream`);
  live.ws = ws;
  ws.onopen = () => {
    setLiveStatus("Streaming to the server", "streaming");
    sendFrame();
  };
  ws.onmessage = (event) => {
    live.inFlight = false;
    const reply = JSON.parse(event.data);
    if (reply.error) setLiveStatus(`Server: ${reply.error}`);
    else onResult(reply, performance.now() - live.sentAt);
    sendFrame(); // the next frame goes only after this reply: slow links drop frames, never queue them
  };
  ws.onclose = (event) => {
    if (live.ws === ws) stopLive(event.reason ? `Disconnected: ${event.reason}` : "Disconnected");
  };
}

function sendFrame() {
  const { video, capture, ws } = live;
  if (!ws || ws.readyState !== WebSocket.OPEN || live.inFlight) return;
  if (!video.videoWidth) {
    setTimeout(sendFrame, 50);
    return;
  }
  grabFrame();
  live.inFlight = true;
  capture.toBlob((blob) => {
    if (live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    live.sentAt = performance.now();
    ws.send(blob);
  }, "image/jpeg", JPEG_QUALITY);
}

function onResult(result, latencyMs) {
  const now = performance.now();
  live.replies.push(now);
  while (live.replies[0] < now - 1000) live.replies.shift();
  $("fps").textContent = live.replies.length.toString();
  $("latency").textContent = `${Math.round(latencyMs)} ms`;
  live.result = result;
  live.frames += 1;
  Object.assign(window.emolens, { lastResult: result, frames: live.frames, fps: live.replies.length });
  live.section.dataset.frames = live.frames.toString();
  live.section.dataset.faces = result.faces.length.toString();
  renderLiveFaces(result.faces);
}

function probabilityBars(probabilities) {
  const rows = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
  return rows.map(([name, p]) => {
    const row = el("div", undefined, { class: "bar" });
    const fill = el("span");
    fill.style.width = pct(p);
    row.append(el("span", name), el("span", undefined, { class: "track" }), el("span", pct(p)));
    row.children[1].append(fill);
    return row;
  });
}

// "#id emotion 87%", plus ", age 34" when ages are estimated (emolens serve --age): Python's label_text
function faceLabel(face) {
  const age = face.age === undefined || face.age === null ? "" : `, age ${Math.round(face.age)}`;
  return `#${face.face_id} ${face.emotion} ${pct(face.confidence)}${age}`;
}

function renderLiveFaces(faces) {
  const items = faces.map((face) => {
    const item = el("li", undefined, {
      "data-face-id": String(face.face_id),
      "data-emotion": face.emotion,
      "data-confidence": String(face.confidence),
    });
    const title = el("strong", faceLabel(face));
    title.style.color = colorFor(face);
    item.append(title, ...probabilityBars(face.probabilities));
    return item;
  });
  $("live-faces").replaceChildren(...items);
}

let layoutRects = null; // Python's placement rule (inpage/layout.mjs), once loaded
import("./inpage/layout.mjs").then((m) => { layoutRects = m.layoutRects; });

function drawOverlay() {
  const { overlay, video, result } = live;
  const ratio = window.devicePixelRatio || 1;
  overlay.width = Math.round(overlay.clientWidth * ratio);
  overlay.height = Math.round(overlay.clientHeight * ratio);
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (result && video.videoWidth && layoutRects) drawFaces(ctx, result, overlay.width / result.width, ratio);
  if (live.stream) requestAnimationFrame(drawOverlay);
}

/** Boxes, labels and probability panels, placed by Python's rule: none covers a face or another
 *  label or panel while the picture has room (joined to its face by a thin line when moved away). */
function drawFaces(ctx, result, scale, ratio) {
  const font = Math.round(14 * ratio);
  const [rowH, nameW, barW] = [12 * ratio, 58 * ratio, 70 * ratio];
  const line = Math.max(1, Math.round(3 * ratio));
  const boxes = result.faces.map(({ box }) => [box.x1, box.y1, box.x2, box.y2].map((v) => Math.round(v * scale)));
  ctx.font = `bold ${font}px system-ui, sans-serif`;
  const labels = result.faces.map((face) => [Math.ceil(ctx.measureText(faceLabel(face)).width) + font, Math.round(font * 1.5)]);
  const panels = result.faces.map((face) => [Math.round(nameW + barW + 8 * ratio),
    Math.round(Object.keys(face.probabilities).length * rowH + 4 * ratio)]);
  const placed = layoutRects(boxes, labels, panels, [ctx.canvas.width, ctx.canvas.height],
    Math.max(4, Math.round(8 * ratio)), line);
  ctx.lineWidth = line;
  result.faces.forEach((face, i) => {
    ctx.strokeStyle = colorFor(face);
    ctx.strokeRect(boxes[i][0], boxes[i][1], boxes[i][2] - boxes[i][0], boxes[i][3] - boxes[i][1]);
  });
  result.faces.forEach((face, i) => {
    const [label, panel] = placed[i];
    const color = colorFor(face);
    drawPanel(ctx, face, panel, color, { rowH, nameW, barW, ratio });
    ctx.fillStyle = color;
    ctx.fillRect(label[0], label[1], label[2] - label[0], label[3] - label[1]);
    ctx.fillStyle = "#000";
    ctx.font = `bold ${font}px system-ui, sans-serif`;
    ctx.fillText(faceLabel(face), label[0] + font / 2, label[1] + font * 1.1);
    for (const rect of [label, panel]) leader(ctx, rect, boxes[i], color, ratio);
  });
}

function drawPanel(ctx, face, panel, color, { rowH, nameW, barW, ratio }) {
  const [px, py] = panel;
  ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
  ctx.fillRect(px, py, panel[2] - px, panel[3] - py);
  ctx.font = `${10 * ratio}px system-ui, sans-serif`;
  Object.entries(face.probabilities).forEach(([name, p], k) => {
    const rowY = py + 2 * ratio + k * rowH;
    ctx.fillStyle = "#fff";
    ctx.fillText(name, px + 4 * ratio, rowY + rowH * 0.8);
    ctx.fillStyle = name === face.emotion ? color : "rgba(255, 255, 255, 0.6)";
    ctx.fillRect(px + nameW, rowY + 2 * ratio, barW * p, rowH - 4 * ratio);
  });
}

/** A thin line from a label or panel placed away from its face to the face box (Python's _leader). */
function leader(ctx, rect, box, color, ratio) {
  const near = 3 + 1;
  if (rect[0] <= box[2] + near && box[0] <= rect[2] + near && rect[1] <= box[3] + near && box[1] <= rect[3] + near) return;
  const clamp = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const px = clamp((box[0] + box[2]) / 2, rect[0], rect[2]);
  const py = clamp((box[1] + box[3]) / 2, rect[1], rect[3]);
  ctx.strokeStyle = color;
  ctx.lineWidth = Math.max(1, ratio);
  ctx.beginPath();
  ctx.moveTo(px, py);
  ctx.lineTo(clamp(px, box[0], box[2]), clamp(py, box[1], box[3]));
  ctx.stroke();
}

// ---------------------------------------------------------------- upload

function renderTable(columns, rows) {
  const table = $("result-table");
  const head = el("tr");
  columns.forEach((c) => head.append(el("th", c)));
  const body = rows.map((row) => {
    const tr = el("tr");
    columns.forEach((c) => tr.append(el("td", row[c] === undefined || row[c] === null ? "" : String(row[c]))));
    return tr;
  });
  table.replaceChildren(head, ...body);
}

function showImageResult(data, src = `data:image/jpeg;base64,${data.annotated_jpeg}`) {
  $("annotated").src = src;
  $("annotated").hidden = false;
  const classes = data.faces.length ? Object.keys(data.faces[0].probabilities) : [];
  const rows = data.faces.map((face) => ({
    face: face.face_id, // the index drawn on the annotated image, as in the CLI, JSON and CSV
    emotion: face.emotion,
    confidence: pct(face.confidence),
    age: face.age === undefined ? undefined : Math.round(face.age),
    box: `${face.box.x1},${face.box.y1} – ${face.box.x2},${face.box.y2}`,
    ...Object.fromEntries(classes.map((c) => [c, face.probabilities[c].toFixed(3)])),
  }));
  const age = data.faces.some((face) => face.age !== undefined) ? ["age"] : [];
  renderTable(["face", "emotion", "confidence", ...age, "box", ...classes], rows);
  return `${data.width}×${data.height}, ${data.faces.length} face(s)`;
}

function showVideoResult(data) {
  $("timeline").src = data.plot_url;
  $("timeline").hidden = false;
  $("csv").href = data.csv_url;
  $("csv").hidden = false;
  const rows = data.summary.map((face) => ({
    face: face.face_id,
    dominant: face.dominant,
    frames: face.frames,
    seen: `${face.first_s.toFixed(1)}–${face.last_s.toFixed(1)} s`,
    "median age": face.median_age === undefined ? undefined : Math.round(face.median_age),
    ...Object.fromEntries(data.classes.map((c) => [c, face.mean_probabilities[c].toFixed(3)])),
  }));
  const age = data.summary.some((face) => face.median_age !== undefined) ? ["median age"] : [];
  renderTable(["face", "dominant", "frames", "seen", ...age, ...data.classes], rows);
  return `${data.frames} frames (${data.duration_s} s), ${data.summary.length} face(s); table: mean probabilities`;
}

/** A photo recognised in this page (no server): decoded by the browser (EXIF rotation applied),
 *  analysed by the in-page engine, annotated by the live overlay's drawing and placement rule. */
async function analyzeInPage(file) {
  if (!file.type.startsWith("image/")) throw new Error(`${file.name}: expected a photo (videos need emolens serve)`);
  const { fromRGBA } = await import("./inpage/imageops.mjs");
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    throw new Error(`${file.name}: not a readable image; expected JPEG, PNG, WebP, GIF or BMP`);
  }
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [bitmap.width, bitmap.height];
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const result = await live.engine.analyze(fromRGBA(pixels, canvas.width, canvas.height));
  drawFaces(ctx, result, 1, Math.max(1, Math.min(canvas.width, canvas.height) / 480));
  return showImageResult(result, canvas.toDataURL("image/jpeg", 0.85));
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const isVideo = file.type.startsWith("video/");
  for (const id of ["annotated", "timeline", "csv"]) $(id).hidden = true;
  $("upload-result").hidden = true;
  $("upload-status").textContent = isVideo ? "Analyzing video…" : "Analyzing…";
  if (!live.server) {
    try {
      $("upload-status").textContent = `${await analyzeInPage(file)} (recognised in this browser)`;
      $("upload-result").hidden = false;
    } catch (err) {
      $("upload-status").textContent = `Failed: ${err.message}`;
    }
    return;
  }
  const body = new FormData();
  body.append("file", file);
  try {
    const response = await fetch(isVideo ? `${API}/analyze-video` : `${API}/analyze?annotate=true`, { method: "POST", body });
    const data = await response.json();
    if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
    $("upload-status").textContent = isVideo ? showVideoResult(data) : showImageResult(data);
    $("upload-result").hidden = false;
  } catch (err) {
    $("upload-status").textContent = `Failed: ${err.message}`;
  }
}

// ---------------------------------------------------------------- start-up

async function showModel() {
  const engine = live.engine;
  if (window.emolens.mode === "browser" && engine) {
    const { model, detector } = engine.config;
    const threads = `${engine.backend.threads} thread${engine.backend.threads === 1 ? "" : "s"}`;
    $("model").textContent = `model ${model.name} · detector ${detector.name} · ${engine.classes.join(", ")}`;
    $("engine").textContent = `${engine.backend.name}, ${threads}`;
    return;
  }
  $("engine").textContent = "";
  try {
    const info = await (await fetch(`${API}/models`)).json();
    $("model").textContent = `model ${info.model} · detector ${info.stream_detector} (photos ${info.detector}) · ${info.classes.join(", ")}`;
  } catch {
    $("model").textContent = "server unreachable";
  }
}

/** Read the page's config, then load the in-page engine; the page starts in browser mode when it
 *  loads, else on the server (``?mode=`` picks one, ``?threads=`` sets WebAssembly threads). */
async function init() {
  const params = new URLSearchParams(location.search);
  const configUrl = new URL("assets/config.json", document.baseURI);
  let config = null;
  try {
    const { fetchOk, loadEngine } = await import("./inpage/engine.mjs");
    config = await (await fetchOk(configUrl)).json();
    live.server = config.server;
    live.engine = await loadEngine(config, configUrl, { threads: Number(params.get("threads")) || undefined });
    window.emolens.engine = live.engine;
  } catch (err) {
    window.emolens.error = location.protocol === "file:"
      ? "open this page through a web server (python -m http.server 8080 --bind 127.0.0.1 -d FOLDER), not as a file"
      : `in-browser recognition unavailable: ${err.message}`;
    console.warn(window.emolens.error);
    live.server = config ? config.server : location.protocol !== "file:";
  }
  $("mode-browser").disabled = !live.engine;
  $("mode-server").disabled = !live.server;
  $("mode-server").parentElement.hidden = !live.server; // a static copy: there is no server to choose
  $("upload").hidden = !live.server && !live.engine; // without a server, photos are recognised in the page
  if (!live.server) {
    $("file").accept = "image/*";
    $("upload-title").textContent = "Analyze a photo (in this browser)";
  }
  if (!live.engine && !live.server) {
    setLiveStatus(`Cannot run: ${window.emolens.error}`, "error");
    return;
  }
  const wanted = params.get("mode");
  const usable = (mode) => (mode === "browser" ? Boolean(live.engine) : live.server);
  setMode(wanted in MODES && usable(wanted) ? wanted : live.engine ? "browser" : "server");
}

const ready = init();
$("start").addEventListener("click", startLive);
$("stop").addEventListener("click", () => stopLive());
for (const mode of Object.keys(MODES)) $(`mode-${mode}`).addEventListener("change", () => setMode(mode));
$("upload-form").addEventListener("submit", upload);
if (new URLSearchParams(location.search).has("autostart")) startLive();
