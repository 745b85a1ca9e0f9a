// Minimal SVG charts for the report (no plotting dependency): a line chart
// with one series per relay, and a horizontal bar chart for ratios.
const COLORS = ['#2456d6', '#d65a24', '#1c7c3c', '#8a2be2'];
const esc = (s) => String(s).replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (v) => (Math.abs(v) >= 1000 ? `${Math.round(v / 100) / 10}k` : `${Math.round(v * 100) / 100}`);

export function lineChart({ title, xLabel, yLabel, series }) {
  const W = 640;
  const H = 360;
  const L = 70;
  const B = 50;
  const pts = series.flatMap((s) => s.points);
  const maxX = Math.max(1, ...pts.map((p) => p[0]));
  const maxY = Math.max(1e-9, ...pts.map((p) => p[1])) * 1.1;
  const x = (v) => L + (v / maxX) * (W - L - 20);
  const y = (v) => H - B - (v / maxY) * (H - B - 40);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - 20}" y2="${H - B}" stroke="#333"/>`,
    `<line x1="${L}" y1="40" x2="${L}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text x="15" y="${H / 2}" text-anchor="middle" transform="rotate(-90 15 ${H / 2})">${esc(yLabel)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const vy = (maxY * i) / 4;
    const vx = (maxX * i) / 4;
    out.push(`<text x="${L - 6}" y="${y(vy) + 4}" text-anchor="end">${fmt(vy)}</text>`);
    out.push(`<text x="${x(vx)}" y="${H - B + 16}" text-anchor="middle">${fmt(vx)}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
    for (const p of s.points)
      out.push(`<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3" fill="${c}"/>`);
    out.push(`<rect x="${L + 10}" y="${44 + i * 16}" width="10" height="10" fill="${c}"/>`);
    out.push(`<text x="${L + 26}" y="${53 + i * 16}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

export function barChart({ title, bars }) {
  const W = 640;
  const row = 26;
  const H = 50 + bars.length * row;
  const L = 260;
  const max = Math.max(1, ...bars.map((b) => b.value));
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  bars.forEach((b, i) => {
    const y = 36 + i * row;
    const w = (b.value / max) * (W - L - 70);
    out.push(`<text x="${L - 8}" y="${y + 13}" text-anchor="end">${esc(b.label)}</text>`);
    out.push(
      `<rect x="${L}" y="${y}" width="${w.toFixed(1)}" height="18" fill="${b.value >= 1 ? '#1c7c3c' : '#b3261e'}"/>`,
    );
    out.push(`<text x="${L + w + 6}" y="${y + 13}">${fmt(b.value)}x</text>`);
  });
  const one = L + (1 / max) * (W - L - 70);
  out.push(`<line x1="${one}" y1="30" x2="${one}" y2="${H - 8}" stroke="#333" stroke-dasharray="4"/>`);
  out.push('</svg>');
  return out.join('\n');
}
