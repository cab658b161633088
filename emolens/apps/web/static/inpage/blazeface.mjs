// BlazeFace in the page: emolens/inference/detectors/blazeface.py step for step (letterbox, SSD
// anchors, box decoding, weighted NMS, close-up re-check of weak candidates), float32 where numpy
// computes in float32, so that boxes match the Python detector's.
"use strict";

import { makeImage, region, resize, roundHalfEven } from "./imageops.mjs";

const f32 = Math.fround;
/** Landmark order of the model's six keypoints (emolens.inference.detectors.BLAZEFACE_LANDMARKS). */
export const LANDMARKS = ["right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear"];
const INPUT = Float32Array.from({ length: 256 }, (_, v) => f32(f32(v * f32(2 / 255)) - 1));

/** Anchor centres (normalised x, y pairs) as MediaPipe's SsdAnchorsCalculator lays them out. */
export function ssdAnchors(options) {
  const strides = options.strides;
  const perLayer = 1 + (options.interpolated_scale_aspect_ratio > 0 ? 1 : 0);
  const offset = options.anchor_offset;
  const centres = [];
  let layer = 0;
  while (layer < strides.length) {
    const stride = strides[layer];
    let same = 0;
    while (layer < strides.length && strides[layer] === stride) {
      same += 1;
      layer += 1;
    }
    const rows = Math.ceil(options.input_height / stride);
    const cols = Math.ceil(options.input_width / stride);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        for (let k = 0; k < same * perLayer; k++) centres.push(f32((x + offset) / cols), f32((y + offset) / rows));
      }
    }
  }
  return Float32Array.from(centres);
}

function iou(a, b) {
  const w = Math.max(Math.min(a[2], b[2]) - Math.max(a[0], b[0]), 0);
  const h = Math.max(Math.min(a[3], b[3]) - Math.max(a[1], b[1]), 0);
  const inter = w * h;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9);
}

/** MediaPipe's weighted NMS: rows overlapping the best one (IoU of columns 0-3) are blended by score. */
export function weightedNms(rows, scores, threshold) {
  let order = scores.map((_, i) => i).sort((i, j) => scores[j] - scores[i]);
  const keptRows = [];
  const keptScores = [];
  while (order.length) {
    const top = rows[order[0]];
    const ious = order.map((i) => iou(top, rows[i]));
    const members = order.filter((_, k) => ious[k] > threshold);
    const blended = new Float64Array(top.length);
    let total = 0;
    for (const m of members) {
      total = f32(total + scores[m]);
      for (let c = 0; c < top.length; c++) blended[c] += rows[m][c] * scores[m];
    }
    keptRows.push(Float32Array.from(blended, (v) => v / total));
    keptScores.push(scores[order[0]]);
    order = order.filter((_, k) => ious[k] <= threshold);
  }
  return { rows: keptRows, scores: keptScores };
}

/** A box scaled by ``scale`` about its centre, the centre then moved down by ``shift`` of the
 *  scaled height: BlazeFace's boxes in YuNet's convention (emolens.boxes.rescale_box, the same
 *  float64 steps). */
export function rescaleBox([x1, y1, x2, y2], scale, shift) {
  const w = (x2 - x1) * scale;
  const h = (y2 - y1) * scale;
  const cx = (x1 + x2) / 2;
  const cy = (y1 + y2) / 2 + shift * h;
  return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
}

/** Round a box to integers inside the image; null when less than 2 px is left (detectors.clip_box). */
export function clipBox(box, width, height) {
  const [x1, y1, x2, y2] = box.map(roundHalfEven);
  const b = [Math.max(0, x1), Math.max(0, y1), Math.min(width, x2), Math.min(height, y2)];
  return b[2] - b[0] >= 2 && b[3] - b[1] >= 2 ? b : null;
}

export class BlazeFace {
  /** ``session``: an onnxruntime-web session of blazeface_{full,short}.onnx; ``config``: the
   *  detector part of the page's config.json (options and thresholds from the Python detector). */
  constructor(ort, session, config) {
    this.ort = ort;
    this.session = session;
    this.name = config.name;
    this.landmarks = LANDMARKS;
    this.options = config.options;
    this.size = config.options.input_width;
    this.minScore = config.min_score;
    this.candidateScore = config.candidate_score;
    this.verifyScore = config.verify_score;
    this.maxVerify = config.max_verify;
    this.context = config.context;
    this.iouThreshold = config.iou_threshold;
    this.boxCalibration = config.box_calibration;
    this.anchors = ssdAnchors(this.options);
    if (this.anchors.length / 2 !== this.options.num_boxes) {
      throw new Error(`${this.anchors.length / 2} anchors generated, the model has ${this.options.num_boxes}`);
    }
  }

  /** The square model input: the image fitted in (aspect kept, centred, black borders). */
  letterbox(img) {
    const { size } = this;
    const scale = size / Math.max(img.width, img.height);
    const nw = Math.max(1, roundHalfEven(img.width * scale));
    const nh = Math.max(1, roundHalfEven(img.height * scale));
    let source = img; // exact halves first, as Python does (OpenCV's fast area path)
    while (source.width % 2 === 0 && source.height % 2 === 0 && 2 * nw <= source.width && 2 * nh <= source.height) {
      source = resize(source, source.width / 2, source.height / 2, "area");
    }
    const fitted = resize(source, nw, nh, scale < 1 ? "area" : "linear");
    const canvas = makeImage(size, size, 3);
    const px = Math.floor((size - nw) / 2);
    const py = Math.floor((size - nh) / 2);
    for (let y = 0; y < nh; y++) canvas.data.set(fitted.data.subarray(y * nw * 3, (y + 1) * nw * 3), ((py + y) * size + px) * 3);
    return { canvas, scale, px, py };
  }

  /** One model pass after NMS, best first: rows of 16 (box x1, y1, x2, y2, then 6 keypoints' x, y)
   *  in image pixels, and their scores. */
  async run(img, minScore) {
    const { canvas, scale, px, py } = this.letterbox(img);
    const input = new Float32Array(canvas.data.length);
    for (let i = 0; i < input.length; i++) input[i] = INPUT[canvas.data[i]];
    const feeds = { [this.session.inputNames[0]]: new this.ort.Tensor("float32", input, [1, this.size, this.size, 3]) };
    const outputs = await this.session.run(feeds);
    const regressors = outputs[this.session.outputNames[0]].data;
    const logits = outputs[this.session.outputNames[1]].data;
    const o = this.options;
    const rows = [];
    const scores = [];
    for (let a = 0; a < logits.length; a++) {
      const score = 1 / (1 + Math.exp(-Math.min(Math.max(logits[a], -100), 100)));
      if (score < minScore) continue;
      const r = regressors.subarray(a * 16, a * 16 + 16);
      const ax = this.anchors[2 * a];
      const ay = this.anchors[2 * a + 1];
      const cx = f32(f32(r[0] / o.x_scale) + ax);
      const cy = f32(f32(r[1] / o.y_scale) + ay);
      const hw = f32(f32(r[2] / o.w_scale) / 2);
      const hh = f32(f32(r[3] / o.h_scale) / 2);
      const row = [f32(cx - hw), f32(cy - hh), f32(cx + hw), f32(cy + hh)];
      for (let k = 0; k < 6; k++) row.push(r[4 + 2 * k] / o.x_scale + ax, r[5 + 2 * k] / o.y_scale + ay);
      rows.push(row);
      scores.push(f32(score));
    }
    const kept = weightedNms(rows, scores, this.iouThreshold);
    // canvas-normalised coordinates -> image pixels
    const shift = [f32(px), f32(py)];
    kept.rows = kept.rows.map((row) => row.map((v, c) => f32(f32(f32(v * this.size) - shift[c % 2]) / scale)));
    return kept;
  }

  /** Re-detect on a close-up around ``box``: the matching {row, score} in image pixels, or null. */
  async verify(img, box) {
    const cx = f32(f32(box[0] + box[2]) / 2);
    const cy = f32(f32(box[1] + box[3]) / 2);
    const half = f32(f32(Math.max(f32(box[2] - box[0]), f32(box[3] - box[1])) * this.context) / 2);
    const x1 = Math.trunc(Math.max(0, f32(cx - half)));
    const y1 = Math.trunc(Math.max(0, f32(cy - half)));
    const x2 = Math.trunc(Math.min(img.width, f32(cx + half)));
    const y2 = Math.trunc(Math.min(img.height, f32(cy + half)));
    if (x2 - x1 < 4 || y2 - y1 < 4) return null;
    const { rows, scores } = await this.run(region(img, x1, y1, x2, y2), this.verifyScore);
    const size = Math.max(f32(box[2] - box[0]), 1);
    for (let i = 0; i < rows.length; i++) {
      const b = rows[i].map((v, c) => f32(v + (c % 2 ? y1 : x1)));
      if (Math.abs(f32(f32(b[0] + b[2]) / 2) - cx) < size / 2 && Math.abs(f32(f32(b[1] + b[3]) / 2) - cy) < size / 2) {
        return { row: b, score: scores[i] };
      }
    }
    return null;
  }

  /** Faces in an RGB image, best first: [{box: [x1, y1, x2, y2] (integers), score, landmarks}]. */
  async detect(img) {
    const { rows, scores } = await this.run(img, this.candidateScore);
    const kept = [];
    const weak = [];
    rows.forEach((row, i) => (scores[i] >= this.minScore ? kept : weak).push({ row, score: scores[i] }));
    for (const { row } of weak.slice(0, this.maxVerify)) {
      const found = await this.verify(img, row);
      if (found && !kept.some((k) => iou(found.row, k.row) > this.iouThreshold)) kept.push(found);
    }
    kept.sort((a, b) => b.score - a.score);
    const detections = [];
    for (const { row, score } of kept) {
      const box = clipBox(rescaleBox(row.slice(0, 4), ...this.boxCalibration), img.width, img.height);
      if (box) detections.push({ box, score, landmarks: LANDMARKS.map((_, k) => [row[4 + 2 * k], row[5 + 2 * k]]) });
    }
    return detections;
  }
}
