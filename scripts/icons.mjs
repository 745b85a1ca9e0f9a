// The app's icon, drawn here rather than downloaded or committed as binaries:
// one set of shapes written out as SVG (favicon, header, "any" icon) and
// rasterised into full-bleed PNGs (the maskable install icons and the
// apple-touch-icon). Plain Node: a 4x4-supersampled rasteriser and a minimal
// PNG encoder (zlib from the standard library).
import { deflateSync } from 'node:zlib';

const ACCENT = [0x24, 0x56, 0xd6];
const WHITE = [0xff, 0xff, 0xff];

// In a unit square. The bubble and its tail stay inside the maskable safe zone (a centred circle of radius 0.4).
const BUBBLE = { x0: 0.22, y0: 0.27, x1: 0.78, y1: 0.66, r: 0.13 };
const TAIL = [
  [0.32, 0.6],
  [0.48, 0.6],
  [0.28, 0.79],
];
const DOTS = [0.37, 0.5, 0.63].map((x) => ({ x, y: 0.465, r: 0.045 }));
const CORNER = 0.22;

const hex = (c) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;

/** The icon as SVG: rounded corners (an "any" icon), or square (`full`). */
export function iconSvg({ full = false } = {}) {
  const k = (v) => Math.round(v * 1000) / 10; // to a 100-unit viewBox
  const b = BUBBLE;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">`,
    `<rect width="100" height="100" rx="${full ? 0 : k(CORNER)}" fill="${hex(ACCENT)}"/>`,
    `<rect x="${k(b.x0)}" y="${k(b.y0)}" width="${k(b.x1 - b.x0)}" height="${k(b.y1 - b.y0)}" rx="${k(b.r)}" fill="#fff"/>`,
    `<path d="M${TAIL.map(([x, y]) => `${k(x)} ${k(y)}`).join('L')}Z" fill="#fff"/>`,
    ...DOTS.map((d) => `<circle cx="${k(d.x)}" cy="${k(d.y)}" r="${k(d.r)}" fill="${hex(ACCENT)}"/>`),
    '</svg>',
  ].join('');
}

function inRoundedRect(x, y, { x0, y0, x1, y1, r }) {
  if (x < x0 || x > x1 || y < y0 || y > y1) return false;
  const cx = Math.min(Math.max(x, x0 + r), x1 - r);
  const cy = Math.min(Math.max(y, y0 + r), y1 - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
}

function inTriangle(x, y, [[ax, ay], [bx, by], [cx, cy]]) {
  const side = (px, py, qx, qy) => (x - qx) * (py - qy) - (px - qx) * (y - qy);
  const d1 = side(ax, ay, bx, by);
  const d2 = side(bx, by, cx, cy);
  const d3 = side(cx, cy, ax, ay);
  return !((d1 < 0 || d2 < 0 || d3 < 0) && (d1 > 0 || d2 > 0 || d3 > 0));
}

/** The colour at a point of the full-bleed icon. */
function colourAt(x, y) {
  if (DOTS.some((d) => (x - d.x) ** 2 + (y - d.y) ** 2 <= d.r * d.r)) return ACCENT;
  if (inRoundedRect(x, y, BUBBLE) || inTriangle(x, y, TAIL)) return WHITE;
  return ACCENT;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** The full-bleed icon as an RGB PNG of `size` x `size` pixels. */
export function iconPng(size) {
  const SS = 4;
  const stride = 1 + size * 3;
  const raw = Buffer.alloc(size * stride);
  for (let py = 0; py < size; py++) {
    const row = py * stride;
    raw[row] = 2; // filter "Up": flat areas become runs of zeros
    for (let px = 0; px < size; px++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = 0; sy < SS; sy++)
        for (let sx = 0; sx < SS; sx++) {
          const c = colourAt((px + (sx + 0.5) / SS) / size, (py + (sy + 0.5) / SS) / size);
          r += c[0];
          g += c[1];
          b += c[2];
        }
      const n = SS * SS;
      raw.set([Math.round(r / n), Math.round(g / n), Math.round(b / n)], row + 1 + px * 3);
    }
  }
  // Apply the Up filter from the bottom row upwards, so each row still reads its unfiltered neighbour above.
  for (let py = size - 1; py > 0; py--)
    for (let i = 1; i < stride; i++) raw[py * stride + i] = (raw[py * stride + i] - raw[(py - 1) * stride + i]) & 0xff;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
