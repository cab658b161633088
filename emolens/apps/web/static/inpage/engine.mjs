// Recognition inside the page: onnxruntime-web (WebAssembly, SIMD; threads when the page is
// cross-origin isolated) runs the face detector and the expression model named in config.json,
// with the crops, normalisation and tracking of the Python package, and the age model when
// config.json names one (`emolens serve --age`). Nothing leaves the page.
"use strict";

import { BlazeFace } from "./blazeface.mjs";
import { cropFace, makeImage, normalize } from "./imageops.mjs";
import { FaceTracker } from "./tracking.mjs";

const RUNTIME = new URL("../vendor/onnxruntime-web/", import.meta.url);

/** fetch() that fails on HTTP errors, naming the URL. */
export async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

/** Load the ONNX sessions of ``config`` (the page's config.json, which names the model files
 *  relative to ``baseUrl``). ``threads``: WebAssembly threads (default: onnxruntime-web's choice
 *  when the page is cross-origin isolated; always 1 when it is not). */
export async function loadEngine(config, baseUrl, { threads } = {}) {
  const ort = await import(new URL("ort.wasm.bundle.min.mjs", RUNTIME).href);
  ort.env.wasm.wasmPaths = { wasm: new URL("ort-wasm-simd-threaded.wasm", RUNTIME).href };
  if (threads) ort.env.wasm.numThreads = threads;
  if (!globalThis.crossOriginIsolated) ort.env.wasm.numThreads = 1; // threads need SharedArrayBuffer
  const session = async (file) => {
    const bytes = new Uint8Array(await (await fetchOk(new URL(file, baseUrl))).arrayBuffer());
    return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  };
  const [detector, model, age] = await Promise.all([
    session(config.detector.file), session(config.model.file), config.age ? session(config.age.file) : null,
  ]);
  const engine = new Engine(ort, config, detector, model, age);
  await engine.analyze(makeImage(64, 48, 3)); // warm-up: the first run of a session is slow
  return engine;
}

/** emolens.age.predicted_age for one row of bin probabilities: the median age in years, each
 *  bin spread evenly over its year. */
export function predictedAge(probs, classes) {
  const order = classes.map((c, i) => [Number(c), i]).sort((x, y) => x[0] - y[0]);
  const total = probs.reduce((sum, v) => sum + v, 0);
  let below = 0;
  for (const [age, i] of order) {
    const p = probs[i] / total;
    if (below + p >= 0.5 || i === order[order.length - 1][1]) {
      const years = age - 0.5 + (0.5 - below) / Math.max(p, 1e-12);
      return Math.min(Math.max(years, order[0][0]), order[order.length - 1][0]);
    }
    below += p;
  }
  return undefined;
}

/** Python's FaceResult.to_dict, with unrounded probabilities (and age). */
function faceDict(face, classes) {
  let emotion = classes[0];
  for (const c of classes) if (face.probabilities[c] > face.probabilities[emotion]) emotion = c;
  const [x1, y1, x2, y2] = face.box;
  return {
    face_id: face.face_id,
    box: { x1, y1, x2, y2 },
    score: face.score,
    emotion,
    confidence: face.probabilities[emotion],
    probabilities: face.probabilities,
    landmarks: Object.fromEntries(face.landmarkNames.map((name, k) => [name, face.landmarks[k].map((v) => Math.round(v * 10) / 10)])),
    ...(face.age === undefined ? {} : { age: Math.round(face.age * 10) / 10 }),
  };
}

export class Engine {
  constructor(ort, config, detectorSession, modelSession, ageSession = null) {
    this.ort = ort;
    this.config = config;
    this.detector = new BlazeFace(ort, detectorSession, config.detector);
    this.model = modelSession;
    this.classes = config.model.classes;
    this.crop = config.model.crop;
    this.temperature = config.model.temperature;
    this.age = ageSession; // Python's AgeEstimator: the median of the softmax over one-year bins
    this.backend = { name: "WebAssembly SIMD", threads: ort.env.wasm.numThreads, isolated: Boolean(globalThis.crossOriginIsolated) };
  }

  /** A tracker with the server's tracking settings (one per stream). */
  tracker() {
    return new FaceTracker(this.config.tracking);
  }

  /** Softmax rows (one array per box) of ``session`` on the faces at pixel ``boxes``, cut by ``crop``. */
  async softmax(session, img, boxes, crop, k, temperature) {
    const { size, channels } = crop;
    const input = normalize(boxes.map((box) => cropFace(img, box, crop)));
    const tensor = new this.ort.Tensor("float32", input, [boxes.length, channels, size, size]);
    const logits = (await session.run({ [session.inputNames[0]]: tensor }))[session.outputNames[0]].data;
    return boxes.map((_, n) => {
      const z = Array.from(logits.subarray(n * k, (n + 1) * k), (v) => v / temperature);
      const top = Math.max(...z);
      const e = z.map((v) => Math.exp(v - top));
      const total = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / total);
    });
  }

  /** Class probabilities (one {class: p} per box) of the faces at pixel ``boxes`` of an RGB image. */
  async classify(img, boxes) {
    if (!boxes.length) return [];
    const rows = await this.softmax(this.model, img, boxes, this.crop, this.classes.length, this.temperature);
    return rows.map((p) => Object.fromEntries(this.classes.map((c, i) => [c, p[i]])));
  }

  /** Ages in years of the faces at pixel ``boxes`` (none without an age model). */
  async ages(img, boxes) {
    if (!this.age || !boxes.length) return boxes.map(() => undefined);
    const { classes, crop, temperature } = this.config.age;
    const rows = await this.softmax(this.age, img, boxes, crop, classes.length, temperature);
    return rows.map((p) => predictedAge(p, classes));
  }

  /** Faces and emotions in an RGB image, as Python's ImageResult.to_dict() (plus timings).
   *  Faces come in reading order (left to right), as Python's Recognizer.detect gives them: ids
   *  0, 1, ... for still images; with a ``tracker`` (video frames), tracked ids (a new face gets the
   *  next id in that order) and smoothed probabilities. */
  async analyze(img, tracker = null) {
    const start = performance.now();
    let detections = await this.detector.detect(img);
    const detected = performance.now();
    detections = [...detections].sort((a, b) => a.box[0] - b.box[0] || a.box[1] - b.box[1]);
    const boxes = detections.map((d) => d.box);
    const [probabilities, ages] = [await this.classify(img, boxes), await this.ages(img, boxes)];
    let faces = detections.map((d, i) => ({
      ...d, face_id: i, probabilities: probabilities[i], landmarkNames: this.detector.landmarks,
      ...(ages[i] === undefined ? {} : { age: ages[i] }),
    }));
    if (tracker) faces = tracker.update(faces);
    const end = performance.now();
    return {
      width: img.width,
      height: img.height,
      faces: faces.map((f) => faceDict(f, this.classes)),
      detect_ms: detected - start,
      classify_ms: end - detected,
    };
  }
}
