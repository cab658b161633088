// emolens web page: live webcam recognition over a WebSocket, and photo/video upload.
"use strict";

const API = "/api/v1";
const FRAME_WIDTH = 640; // frames are downscaled to this width before sending
const JPEG_QUALITY = 0.7;
const COLORS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];

const $ = (id) => document.getElementById(id);
const pct = (p) => `${Math.round(p * 100)}%`;
const colorFor = (face) => COLORS[((face.face_id ?? 0) % COLORS.length + COLORS.length) % COLORS.length];

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// ---------------------------------------------------------------- live camera

const live = {
  section: $("live"),
  video: $("video"),
  overlay: $("overlay"),
  capture: document.createElement("canvas"),
  ws: null,
  stream: null,
  inFlight: false, // at most one frame is ever waiting for its reply
  sentAt: 0,
  replies: [], // reply timestamps of the last second, for the FPS figure
  result: null,
  frames: 0,
};

function setLiveStatus(text, state) {
  $("live-status").textContent = text;
  if (state) live.section.dataset.state = state;
}

async function startLive() {
  $("start").disabled = true;
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (err) {
    setLiveStatus(`Camera unavailable: ${err.message}`, "error");
    $("start").disabled = false;
    return;
  }
  live.video.srcObject = live.stream;
  await live.video.play();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}${API}/stream`);
  live.ws = ws;
  ws.onopen = () => {
    setLiveStatus("Streaming", "streaming");
    sendFrame();
  };
  ws.onmessage = (event) => onReply(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (live.ws === ws) stopLive(event.reason ? `Disconnected: ${event.reason}` : "Disconnected");
  };
  $("stop").disabled = false;
  requestAnimationFrame(drawOverlay);
}

function stopLive(message = "Camera off") {
  const ws = live.ws;
  live.ws = null;
  ws?.close();
  live.stream?.getTracks().forEach((track) => track.stop());
  live.stream = null;
  live.inFlight = false;
  live.result = null;
  $("start").disabled = false;
  $("stop").disabled = true;
  setLiveStatus(message, "idle");
  drawOverlay();
}

function sendFrame() {
  const { video, capture, ws } = live;
  if (!ws || ws.readyState !== WebSocket.OPEN || live.inFlight) return;
  if (!video.videoWidth) {
    setTimeout(sendFrame, 50);
    return;
  }
  const scale = Math.min(1, FRAME_WIDTH / video.videoWidth);
  capture.width = Math.round(video.videoWidth * scale);
  capture.height = Math.round(video.videoHeight * scale);
  capture.getContext("2d").drawImage(video, 0, 0, capture.width, capture.height);
  live.inFlight = true;
  capture.toBlob((blob) => {
    if (live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    live.sentAt = performance.now();
    ws.send(blob);
  }, "image/jpeg", JPEG_QUALITY);
}

function onReply(reply) {
  const now = performance.now();
  live.inFlight = false;
  live.replies.push(now);
  while (live.replies[0] < now - 1000) live.replies.shift();
  $("fps").textContent = live.replies.length.toString();
  $("latency").textContent = `${Math.round(now - live.sentAt)} ms`;
  if (reply.error) {
    setLiveStatus(`Server: ${reply.error}`);
  } else {
    live.result = reply;
    live.frames += 1;
    live.section.dataset.frames = live.frames.toString();
    live.section.dataset.faces = reply.faces.length.toString();
    renderLiveFaces(reply.faces);
  }
  sendFrame(); // the next frame goes only after this reply: slow links drop frames, never queue them
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

function renderLiveFaces(faces) {
  const items = faces.map((face) => {
    const item = el("li", undefined, {
      "data-face-id": String(face.face_id),
      "data-emotion": face.emotion,
      "data-confidence": String(face.confidence),
    });
    const title = el("strong", `#${face.face_id} ${face.emotion} ${pct(face.confidence)}`);
    title.style.color = colorFor(face);
    item.append(title, ...probabilityBars(face.probabilities));
    return item;
  });
  $("live-faces").replaceChildren(...items);
}

function drawOverlay() {
  const { overlay, video, result } = live;
  const ratio = window.devicePixelRatio || 1;
  overlay.width = Math.round(overlay.clientWidth * ratio);
  overlay.height = Math.round(overlay.clientHeight * ratio);
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  if (result && video.videoWidth) {
    const scale = overlay.width / result.width; // boxes are in the sent frame's pixels
    for (const face of result.faces) drawFace(ctx, face, scale, ratio);
  }
  if (live.ws) requestAnimationFrame(drawOverlay);
}

function drawFace(ctx, face, scale, ratio) {
  const { x1, y1, x2, y2 } = face.box;
  const [x, y, w, h] = [x1 * scale, y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale];
  const color = colorFor(face);
  const font = 14 * ratio;
  ctx.lineWidth = 3 * ratio;
  ctx.strokeStyle = color;
  ctx.strokeRect(x, y, w, h);

  ctx.font = `bold ${font}px system-ui, sans-serif`;
  const label = `#${face.face_id} ${face.emotion} ${pct(face.confidence)}`;
  const labelY = y > font * 1.6 ? y - font * 1.5 : y + h;
  ctx.fillStyle = color;
  ctx.fillRect(x - ctx.lineWidth / 2, labelY, ctx.measureText(label).width + font, font * 1.5);
  ctx.fillStyle = "#000";
  ctx.fillText(label, x + font / 2, labelY + font * 1.1);

  // probability bars beside the box (left of it when there is no room on the right)
  const rows = Object.entries(face.probabilities);
  const rowH = 12 * ratio;
  const barW = 70 * ratio;
  const nameW = 58 * ratio;
  const panelW = nameW + barW + 8 * ratio;
  const px = x + w + panelW + 6 * ratio <= ctx.canvas.width ? x + w + 6 * ratio : Math.max(0, x - panelW - 6 * ratio);
  ctx.fillStyle = "rgba(0, 0, 0, 0.55)";
  ctx.fillRect(px, y, panelW, rows.length * rowH + 4 * ratio);
  ctx.font = `${10 * ratio}px system-ui, sans-serif`;
  rows.forEach(([name, p], i) => {
    const rowY = y + 2 * ratio + i * rowH;
    ctx.fillStyle = "#fff";
    ctx.fillText(name, px + 4 * ratio, rowY + rowH * 0.8);
    ctx.fillStyle = name === face.emotion ? color : "rgba(255, 255, 255, 0.6)";
    ctx.fillRect(px + nameW, rowY + 2 * ratio, barW * p, rowH - 4 * ratio);
  });
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

function showImageResult(data) {
  $("annotated").src = `data:image/jpeg;base64,${data.annotated_jpeg}`;
  $("annotated").hidden = false;
  const classes = data.faces.length ? Object.keys(data.faces[0].probabilities) : [];
  const rows = data.faces.map((face) => ({
    face: face.face_id, // the index drawn on the annotated image, as in the CLI, JSON and CSV
    emotion: face.emotion,
    confidence: pct(face.confidence),
    box: `${face.box.x1},${face.box.y1} – ${face.box.x2},${face.box.y2}`,
    ...Object.fromEntries(classes.map((c) => [c, face.probabilities[c].toFixed(3)])),
  }));
  renderTable(["face", "emotion", "confidence", "box", ...classes], rows);
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
    ...Object.fromEntries(data.classes.map((c) => [c, face.mean_probabilities[c].toFixed(3)])),
  }));
  renderTable(["face", "dominant", "frames", "seen", ...data.classes], rows);
  return `${data.frames} frames (${data.duration_s} s), ${data.summary.length} face(s); table: mean probabilities`;
}

async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) return;
  const isVideo = file.type.startsWith("video/");
  for (const id of ["annotated", "timeline", "csv"]) $(id).hidden = true;
  $("upload-result").hidden = true;
  $("upload-status").textContent = isVideo ? "Analyzing video…" : "Analyzing…";
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
  try {
    const info = await (await fetch(`${API}/models`)).json();
    $("model").textContent = `model ${info.model} · detector ${info.detector} · ${info.classes.join(", ")}`;
  } catch {
    $("model").textContent = "server unreachable";
  }
}

$("start").addEventListener("click", startLive);
$("stop").addEventListener("click", () => stopLive());
$("upload-form").addEventListener("submit", upload);
showModel();
if (new URLSearchParams(location.search).has("autostart")) startLive();
