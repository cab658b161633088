// Stable face ids and per-face smoothing in the page: emolens/inference/tracking.py's FaceTracker
// (greedy IoU matching with a centroid fallback, exponential smoothing of each track's probabilities).
"use strict";

function iou(a, b) {
  const w = Math.max(Math.min(a[2], b[2]) - Math.max(a[0], b[0]), 0);
  const h = Math.max(Math.min(a[3], b[3]) - Math.max(a[1], b[1]), 0);
  const inter = w * h;
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9);
}

export class FaceTracker {
  /** Options as in Python: smoothing (0 = off), iou_threshold, max_distance (centroid fallback,
   *  in face widths), max_missed (frames a face may go unseen before its id is retired). */
  constructor({ smoothing = 0.6, iou_threshold = 0.3, max_distance = 0.75, max_missed = 15 } = {}) {
    if (!(smoothing >= 0 && smoothing < 1)) throw new Error(`smoothing must be in [0, 1), got ${smoothing}`);
    this.smoothing = smoothing;
    this.iouThreshold = iou_threshold;
    this.maxDistance = max_distance;
    this.maxMissed = max_missed;
    this.reset();
  }

  reset() {
    this.tracks = [];
    this.nextId = 0;
  }

  /** ``faces``: [{box: [x1, y1, x2, y2], probabilities: {class: p}, ...}]; returns copies with
   *  ``face_id`` and smoothed probabilities (and ``age``, when faces carry one), in the same order. */
  update(faces) {
    const pairs = this.match(faces.map((f) => f.box));
    const s = this.smoothing;
    const out = faces.map((face, i) => {
      let track = pairs.get(i);
      if (track === undefined) {
        track = { faceId: this.nextId++, box: face.box, probabilities: { ...face.probabilities }, missed: 0, age: face.age };
        this.tracks.push(track);
      } else {
        const smoothed = {};
        for (const [k, v] of Object.entries(face.probabilities)) smoothed[k] = s * (track.probabilities[k] ?? v) + (1 - s) * v;
        track.probabilities = smoothed;
        if (face.age !== undefined) track.age = track.age === undefined ? face.age : s * track.age + (1 - s) * face.age;
        track.box = face.box;
        track.missed = 0;
      }
      const age = face.age === undefined ? {} : { age: track.age };
      return { ...face, probabilities: { ...track.probabilities }, face_id: track.faceId, ...age };
    });
    const seen = new Set(pairs.values());
    for (const t of this.tracks) if (!seen.has(t)) t.missed += 1;
    this.tracks = this.tracks.filter((t) => t.missed <= this.maxMissed);
    return out;
  }

  match(boxes) {
    const pairs = new Map();
    if (!boxes.length || !this.tracks.length) return pairs;
    // IoU first; the centroid fallback catches fast motion (below any IoU) with a lower rank
    const score = boxes.map((b) => this.tracks.map((t) => {
      const overlap = iou(b, t.box);
      if (overlap >= this.iouThreshold) return 1 + overlap;
      const width = Math.max(t.box[2] - t.box[0], 1);
      const dx = (b[0] + b[2]) / 2 - (t.box[0] + t.box[2]) / 2;
      const dy = (b[1] + b[3]) / 2 - (t.box[1] + t.box[3]) / 2;
      const dist = Math.sqrt(dx * dx + dy * dy) / width;
      return dist <= this.maxDistance ? 1 - dist : -1;
    }));
    for (;;) {
      let best = -Infinity;
      let bi = 0;
      let bj = 0;
      score.forEach((row, i) => row.forEach((v, j) => {
        if (v > best) [best, bi, bj] = [v, i, j];
      }));
      if (best < 0) return pairs;
      pairs.set(bi, this.tracks[bj]);
      score[bi].fill(-1);
      for (const row of score) row[bj] = -1;
    }
  }
}
