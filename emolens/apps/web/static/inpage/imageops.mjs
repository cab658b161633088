// Pixel operations of emolens/data/preprocess.py and the BlazeFace letterbox, ported from OpenCV
// 4.x (cv2.resize INTER_AREA / INTER_LINEAR, cvtColor, equalizeHist) so that the page feeds its
// models the same uint8 pixels as Python does. An image is {data: Uint8Array, width, height,
// channels} with channels 1 (grey) or 3 (RGB), rows packed.
"use strict";

const f32 = Math.fround;

/** Round half to even: Python's round() and OpenCV's cvRound. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const saturate = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

export function makeImage(width, height, channels, data = new Uint8Array(width * height * channels)) {
  if (data.length !== width * height * channels) {
    throw new Error(`image data holds ${data.length} bytes; expected ${width}×${height}×${channels}`);
  }
  return { data, width, height, channels };
}

/** RGB image from canvas RGBA pixels (ImageData or its fields). */
export function fromRGBA(rgba, width, height) {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < out.length; i += 4, j += 3) {
    out[j] = rgba[i];
    out[j + 1] = rgba[i + 1];
    out[j + 2] = rgba[i + 2];
  }
  return makeImage(width, height, 3, out);
}

// ------------------------------------------------------------------ resize

/** cv2.resize(image, (width, height), interpolation) for "area" (downscaling) and "linear". */
export function resize(img, width, height, interpolation) {
  if (width === img.width && height === img.height) return makeImage(width, height, img.channels, img.data.slice());
  const scaleX = 1 / (width / img.width);
  const scaleY = 1 / (height / img.height);
  const ix = Math.round(scaleX);
  const iy = Math.round(scaleY);
  const integer = Math.abs(scaleX - ix) < Number.EPSILON && Math.abs(scaleY - iy) < Number.EPSILON;
  // OpenCV turns an exact 2× linear downscale into the (equal) area one
  if (interpolation === "linear" && integer && ix === 2 && iy === 2) interpolation = "area";
  if (interpolation === "area") {
    if (scaleX < 1 || scaleY < 1) throw new Error(`area resize only shrinks: ${img.width}×${img.height} → ${width}×${height}`);
    return integer ? resizeAreaFast(img, width, height, ix, iy) : resizeArea(img, width, height, scaleX, scaleY);
  }
  if (interpolation !== "linear") throw new Error(`unknown interpolation ${interpolation}; expected "area" or "linear"`);
  return resizeLinear(img, width, height, scaleX, scaleY);
}

function resizeAreaFast(img, width, height, ix, iy) {
  const { data, channels: cn } = img;
  const rowStep = img.width * cn;
  const out = new Uint8Array(width * height * cn);
  const area = ix * iy;
  const scale = f32(1 / area);
  for (let dy = 0; dy < height; dy++) {
    const row = dy * iy * rowStep;
    for (let dx = 0; dx < width; dx++) {
      for (let k = 0; k < cn; k++) {
        let sum = 0;
        for (let sy = 0; sy < iy; sy++) {
          const base = row + sy * rowStep + dx * ix * cn + k;
          for (let sx = 0; sx < ix; sx++) sum += data[base + sx * cn];
        }
        out[(dy * width + dx) * cn + k] = ix === 2 && iy === 2 ? (sum + 2) >> 2 : saturate(roundHalfEven(f32(sum * scale)));
      }
    }
  }
  return makeImage(width, height, cn, out);
}

/** OpenCV's computeResizeAreaTab: (destination index, source index, weight) triples. */
function areaTable(ssize, dsize, cn, scale) {
  const di = [];
  const si = [];
  const alpha = [];
  const push = (d, s, a) => { di.push(d); si.push(s); alpha.push(f32(a)); };
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1);
    const sx2 = Math.min(Math.floor(fsx2), ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) push(dx * cn, (sx1 - 1) * cn, (sx1 - fsx1) / cellWidth);
    for (let sx = sx1; sx < sx2; sx++) push(dx * cn, sx * cn, 1 / cellWidth);
    if (fsx2 - sx2 > 1e-3) push(dx * cn, sx2 * cn, Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth);
  }
  return { di: Int32Array.from(di), si: Int32Array.from(si), alpha: Float32Array.from(alpha) };
}

/** One source row through the horizontal area taps into ``buf`` (float32 sums, in tap order). */
function areaRow(buf, data, src, table, cn) {
  const { di, si, alpha } = table;
  buf.fill(0);
  if (cn === 3) {
    for (let k = 0; k < di.length; k++) {
      const s = src + si[k];
      const d = di[k];
      const a = alpha[k];
      buf[d] = f32(buf[d] + f32(data[s] * a));
      buf[d + 1] = f32(buf[d + 1] + f32(data[s + 1] * a));
      buf[d + 2] = f32(buf[d + 2] + f32(data[s + 2] * a));
    }
  } else {
    for (let k = 0; k < di.length; k++) buf[di[k]] = f32(buf[di[k]] + f32(data[src + si[k]] * alpha[k]));
  }
}

function resizeArea(img, width, height, scaleX, scaleY) {
  const { data, channels: cn } = img;
  const xt = areaTable(img.width, width, cn, scaleX);
  const yt = areaTable(img.height, height, 1, scaleY);
  const n = width * cn;
  const out = new Uint8Array(height * n);
  const buf = new Float32Array(n);
  const sum = new Float32Array(n);
  let prev = yt.di[0];
  let row = -1;
  for (let j = 0; j < yt.di.length; j++) {
    const beta = yt.alpha[j];
    const dy = yt.di[j];
    if (yt.si[j] !== row) { // a source row shared by two output rows is summed once
      row = yt.si[j];
      areaRow(buf, data, row * img.width * cn, xt, cn);
    }
    if (dy !== prev) {
      const o = prev * n;
      for (let x = 0; x < n; x++) {
        out[o + x] = saturate(roundHalfEven(sum[x]));
        sum[x] = f32(beta * buf[x]);
      }
      prev = dy;
    } else {
      for (let x = 0; x < n; x++) sum[x] = f32(sum[x] + f32(beta * buf[x]));
    }
  }
  const o = prev * n;
  for (let x = 0; x < n; x++) out[o + x] = saturate(roundHalfEven(sum[x]));
  return makeImage(width, height, cn, out);
}

/** Source position of output coordinate ``d``: [integer part, float32 fraction]. */
function linearTap(d, scale) {
  const f = f32((d + 0.5) * scale - 0.5);
  const s = Math.floor(f);
  return [s, f32(f - s)];
}

function resizeLinear(img, width, height, scaleX, scaleY) {
  const { data, channels: cn } = img;
  const sw = img.width;
  const sh = img.height;
  const ONE = 2048;
  const xofs = new Int32Array(width);
  const xa0 = new Int32Array(width);
  const xa1 = new Int32Array(width);
  let xmax = width;
  for (let dx = 0; dx < width; dx++) {
    let [sx, fx] = linearTap(dx, scaleX);
    if (sx < 0) { fx = 0; sx = 0; }
    if (sx + 1 >= sw) {
      xmax = Math.min(xmax, dx);
      if (sx >= sw - 1) { fx = 0; sx = sw - 1; }
    }
    xofs[dx] = sx * cn;
    xa0[dx] = roundHalfEven(f32(1 - fx) * ONE);
    xa1[dx] = roundHalfEven(fx * ONE);
  }
  // horizontal pass of one source row (cached: consecutive output rows share source rows)
  const cache = new Map();
  const hrow = (sy) => {
    let row = cache.get(sy);
    if (row) return row;
    row = new Int32Array(width * cn);
    const base = sy * sw * cn;
    for (let dx = 0; dx < width; dx++) {
      for (let c = 0; c < cn; c++) {
        const s = base + xofs[dx] + c;
        row[dx * cn + c] = dx < xmax ? data[s] * xa0[dx] + data[s + cn] * xa1[dx] : data[s] * ONE;
      }
    }
    cache.set(sy, row);
    return row;
  };
  const n = width * cn;
  const out = new Uint8Array(height * n);
  for (let dy = 0; dy < height; dy++) {
    const [sy, fy] = linearTap(dy, scaleY);
    const b0 = roundHalfEven(f32(1 - fy) * ONE);
    const b1 = roundHalfEven(fy * ONE);
    const r0 = hrow(Math.min(Math.max(sy, 0), sh - 1));
    const r1 = hrow(Math.min(Math.max(sy + 1, 0), sh - 1));
    const o = dy * n;
    // OpenCV's 8-bit vertical pass: (b·(S >> 4)) >> 16 per row, then (sum + 2) >> 2
    for (let x = 0; x < n; x++) out[o + x] = (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2;
  }
  return makeImage(width, height, cn, out);
}

// ------------------------------------------------------------------ colour and contrast

/** RGB → grey as cv2.cvtColor(RGB2GRAY) computes it in the x86 wheels (Intel IPP: BT.601 weights
 *  in 15-bit fixed point; OpenCV's own 14-bit code differs by 1 on 0.3 % of colours). */
export function toGray(img) {
  if (img.channels === 1) return img;
  const { data } = img;
  const out = new Uint8Array(img.width * img.height);
  for (let i = 0, j = 0; i < out.length; i++, j += 3) {
    out[i] = (data[j] * 9798 + data[j + 1] * 19235 + data[j + 2] * 3735 + 16384) >> 15;
  }
  return makeImage(img.width, img.height, 1, out);
}

/** emolens.preprocess.to_channels: grey ↔ RGB. */
export function toChannels(img, channels) {
  if (img.channels === channels) return img;
  if (channels === 1) return toGray(img);
  const out = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.data.length; i++) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = img.data[i];
  return makeImage(img.width, img.height, 3, out);
}

/** cv2.equalizeHist's lookup table for one channel (read with ``stride`` from ``offset``). */
function equalizeLut(values, offset, stride) {
  const hist = new Int32Array(256);
  let total = 0;
  for (let i = offset; i < values.length; i += stride, total++) hist[values[i]]++;
  const lut = new Uint8Array(256);
  let i = 0;
  while (!hist[i]) i++;
  if (hist[i] === total) return lut.fill(i);
  const scale = f32(255 / (total - hist[i]));
  let sum = 0;
  for (i++; i < 256; i++) {
    sum += hist[i];
    lut[i] = saturate(roundHalfEven(f32(sum * scale)));
  }
  return lut;
}

/** emolens.preprocess.equalize: histogram equalisation of grey, or of the luma Y of YCrCb. */
export function equalize(img) {
  const { data, width, height } = img;
  if (img.channels === 1) {
    const lut = equalizeLut(data, 0, 1);
    return makeImage(width, height, 1, data.map((v) => lut[v]));
  }
  const ycc = new Int32Array(data.length);
  for (let j = 0; j < data.length; j += 3) {
    const r = data[j];
    const b = data[j + 2];
    const y = (r * 4899 + data[j + 1] * 9617 + b * 1868 + 8192) >> 14;
    ycc[j] = y;
    ycc[j + 1] = saturate(((r - y) * 11682 + (128 << 14) + 8192) >> 14);
    ycc[j + 2] = saturate(((b - y) * 9241 + (128 << 14) + 8192) >> 14);
  }
  const lut = equalizeLut(ycc, 0, 3);
  const out = new Uint8Array(data.length);
  const descale = (v) => (v + 8192) >> 14;
  for (let j = 0; j < data.length; j += 3) {
    const y = lut[ycc[j]];
    const cr = ycc[j + 1] - 128;
    const cb = ycc[j + 2] - 128;
    out[j] = saturate(y + descale(cr * 22987));
    out[j + 1] = saturate(y + descale(cb * -5636 + cr * -11698));
    out[j + 2] = saturate(y + descale(cb * 29049));
  }
  return makeImage(width, height, 3, out);
}

// ------------------------------------------------------------------ crops (emolens.preprocess)

/** Widen an [x1, y1, x2, y2] box by ``margin`` per side, optionally squared about its centre. */
export function expandBox([x1, y1, x2, y2], margin, square) {
  let w = x2 - x1;
  let h = y2 - y1;
  const cx = x1 + w / 2;
  const cy = y1 + h / 2;
  if (square) w = h = Math.max(w, h);
  w *= 1 + 2 * margin;
  h *= 1 + 2 * margin;
  return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
}

/** Cut a (widened) box out of an image; parts outside it replicate the border. */
export function cropBox(img, box, margin = 0, square = false) {
  const [x1, y1, x2, y2] = expandBox(box, margin, square).map(roundHalfEven);
  if (x2 <= x1 || y2 <= y1) throw new Error(`empty face box [${box.join(", ")}]`);
  const { data, width, height, channels: cn } = img;
  const w = x2 - x1;
  const h = y2 - y1;
  const out = new Uint8Array(w * h * cn);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(Math.max(y1 + y, 0), height - 1);
    for (let x = 0; x < w; x++) {
      const sx = Math.min(Math.max(x1 + x, 0), width - 1);
      const s = (sy * width + sx) * cn;
      const d = (y * w + x) * cn;
      for (let c = 0; c < cn; c++) out[d + c] = data[s + c];
    }
  }
  return makeImage(w, h, cn, out);
}

/** A sub-image [x1, x2) × [y1, y2) (integer pixel bounds inside the image). */
export function region(img, x1, y1, x2, y2) {
  const { data, width, channels: cn } = img;
  const w = x2 - x1;
  const out = new Uint8Array(w * (y2 - y1) * cn);
  for (let y = y1; y < y2; y++) out.set(data.subarray((y * width + x1) * cn, (y * width + x2) * cn), (y - y1) * w * cn);
  return makeImage(w, y2 - y1, cn, out);
}

/** emolens.preprocess.prepare: a cropped face as the model's uint8 size×size×channels input. */
export function prepare(face, spec) {
  let img = face;
  if (face.width !== spec.size || face.height !== spec.size) {
    const interpolation = Math.min(face.width, face.height) > spec.size ? "area" : "linear";
    img = resize(face, spec.size, spec.size, interpolation);
  }
  img = toChannels(img, spec.channels);
  return spec.contrast === "equalize" ? equalize(img) : img;
}

/** emolens.preprocess.crop_face: the face in ``box`` of an RGB image, as the model expects. */
export function cropFace(img, box, spec) {
  return prepare(cropBox(img, box, spec.margin, spec.square), spec);
}

const NORMALIZE = Float32Array.from({ length: 256 }, (_, v) => f32(f32(f32(v * f32(1 / 255)) - 0.5) / 0.5));

/** emolens.preprocess.normalize: uint8 faces (same size) → float32 N×C×H×W in [-1, 1]. */
export function normalize(faces) {
  const { width: w, height: h, channels: cn } = faces[0];
  const plane = w * h;
  const out = new Float32Array(faces.length * cn * plane);
  faces.forEach((face, n) => {
    const base = n * cn * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < cn; c++) out[base + c * plane + p] = NORMALIZE[face.data[p * cn + c]];
    }
  });
  return out;
}
