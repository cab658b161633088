// Where the page draws each face's label and probability panel: the placement rule of Python's
// emolens.inference.annotate (layout_rects and place), ported line for line so that neither covers
// a face or another label or panel while the picture has room. tests/test_web_inpage.py checks it
// against Python on the group photos. Rects are [x1, y1, x2, y2] in pixels.
"use strict";

export const GAP = 3; // px between a face box and its label or panel

/** Overlap area of ``rect`` with each of ``others``. */
function overlapArea(rect, others) {
  return others.map((o) => Math.max(0, Math.min(rect[2], o[2]) - Math.max(rect[0], o[0]))
    * Math.max(0, Math.min(rect[3], o[3]) - Math.max(rect[1], o[1])));
}

const free = (rect, others) => overlapArea(rect, others).every((a) => a === 0);

/** A ``[w, h]`` rect inside the image covering none of ``occupied``: the first free ``preferred``
 *  top-left corner, else the free grid spot (``step`` px) nearest to ``near``, else the in-image
 *  spot that covers least. Distances are exact integers, so ties break as in Python. */
export function place([w, h], near, preferred, occupied, [imgW, imgH], step) {
  const inside = preferred.filter(([x, y]) => x >= 0 && y >= 0 && x + w <= imgW && y + h <= imgH);
  for (const [x, y] of inside) if (free([x, y, x + w, y + h], occupied)) return [x, y, x + w, y + h];
  const grid = [];
  for (let y = 0; y < Math.max(1, imgH - h + 1); y += step) {
    for (let x = 0; x < Math.max(1, imgW - w + 1); x += step) {
      const dx = 2 * x + w - (near[0] + near[2]);
      const dy = 2 * y + h - (near[1] + near[3]);
      grid.push([dx * dx + dy * dy, grid.length, x, y]);
    }
  }
  grid.sort((a, b) => a[0] - b[0] || a[1] - b[1]); // stable, as numpy's argsort(kind="stable")
  const spot = grid.find(([, , x, y]) => free([x, y, x + w, y + h], occupied));
  if (spot) return [spot[2], spot[3], spot[2] + w, spot[3] + h];
  const spots = inside.length ? inside : grid.slice(0, 2000).map(([, , x, y]) => [x, y]);
  let best = null;
  let bestKey = null;
  for (const [x, y] of spots) {
    const key = [overlapArea([x, y, x + w, y + h], occupied).reduce((a, b) => a + b, 0),
      Math.abs(x - near[0]) + Math.abs(y - near[1])];
    if (!best || key[0] < bestKey[0] || (key[0] === bestKey[0] && key[1] < bestKey[1])) [best, bestKey] = [[x, y], key];
  }
  return [best[0], best[1], best[0] + w, best[1] + h];
}

/** Per face box, its label's and (with ``panelSizes``) its panel's rect: boxes grown by ``pad``
 *  are taken first; the label goes above the box or below it, the panel beside it. */
export function layoutRects(boxes, labelSizes, panelSizes, imageSize, step, pad) {
  const occupied = boxes.map(([x1, y1, x2, y2]) => [x1 - pad, y1 - pad, x2 + pad, y2 + pad]);
  return boxes.map((box, i) => {
    const [x1, y1, x2, y2] = box;
    const [lw, lh] = labelSizes[i];
    const label = place([lw, lh], box, [[x1, y1 - GAP - lh], [x2 - lw, y1 - GAP - lh], [x1, y2 + GAP]],
      occupied, imageSize, step);
    occupied.push(label);
    let panel = null;
    if (panelSizes) {
      const [pw, ph] = panelSizes[i];
      const top = Math.min(y1, label[1]);
      panel = place([pw, ph], box, [[x2 + GAP, top], [x1 - GAP - pw, top], [x2 + GAP, y2 - ph],
        [x1 - GAP - pw, y2 - ph], [x1, Math.max(y2, label[3]) + GAP], [x1, Math.min(y1, label[1]) - GAP - ph]],
      occupied, imageSize, step);
      occupied.push(panel);
    }
    return [label, panel];
  });
}
