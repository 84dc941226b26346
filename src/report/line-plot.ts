// A line chart as a standalone SVG document: series over a shared x axis, with ticks and a legend.

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  color: string;
  /** A shaded band around the line (say mean ± std over seeds): its low and high y at each point's x. */
  band?: readonly (readonly [number, number])[];
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  logY?: boolean;
  /** Ticks on whole numbers only (rounds, steps). */
  integerX?: boolean;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * About `count` round tick values covering [lo, hi], made by index (i · step): adding the step to a running
 * value never advances when the step is below the values' float spacing (a span of 1e-16 around 1), and
 * that loop never ended; the loop counts ticks, as past 2^53 an index + 1 does not advance either. A span
 * too fine for `count` distinct ticks gets its two ends.
 */
export function ticks(lo: number, hi: number, count: number, integers = false): number[] {
  const span = hi - lo || 1;
  const step0 = 10 ** Math.floor(Math.log10(span / count));
  const step = Math.max(integers ? 1 : 0, [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= count)!);
  const first = Math.ceil(lo / step);
  const last = Math.floor((hi + 1e-9 * span) / step);
  if (!Number.isFinite(first) || !Number.isFinite(last) || last - first > 4 * count) return [lo, hi];
  const out = new Set<number>();
  for (let k = 0; k <= last - first; k++) out.add(Number(((first + k) * step).toPrecision(12)));
  return [...out];
}

export function linePlotSvg(series: readonly Series[], o: PlotOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 420;
  const m = { left: 70, right: 20, top: 40, bottom: 50 };
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  const all = series.flatMap((s) => [
    ...s.points,
    ...(s.band ?? []).flatMap(([lo, hi], i) => [[s.points[i]![0], lo] as const, [s.points[i]![0], hi] as const]),
  ]);
  // Ranges padded a little (and widened when all points share a value), so every point is inside.
  const pad = (lo: number, hi: number, by: number): [number, number] =>
    hi > lo ? [lo - (hi - lo) * by, hi + (hi - lo) * by] : [lo - 1, hi + 1];
  const [x0, x1] = pad(Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0])), 0);
  const [y0, y1] = pad(Math.min(...all.map((p) => fy(p[1]))), Math.max(...all.map((p) => fy(p[1]))), 0.05);
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * (W - m.left - m.right);
  const sy = (y: number) => H - m.bottom - ((fy(y) - y0) / (y1 - y0 || 1)) * (H - m.top - m.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
  ];
  for (const t of ticks(x0, x1, 8, o.integerX))
    parts.push(
      `<line x1="${sx(t)}" x2="${sx(t)}" y1="${m.top}" y2="${H - m.bottom}" stroke="#eee"/><text x="${sx(t)}" y="${H - m.bottom + 16}" ` +
        `text-anchor="middle">${t}</text>`,
    );
  for (const t of ticks(y0, y1, 6)) {
    const y = o.logY ? 10 ** t : t;
    const yy = H - m.bottom - ((t - y0) / (y1 - y0 || 1)) * (H - m.top - m.bottom);
    parts.push(
      `<line x1="${m.left}" x2="${W - m.right}" y1="${yy}" y2="${yy}" stroke="#eee"/><text x="${m.left - 6}" y="${yy + 4}" ` +
        `text-anchor="end">${Number(y.toPrecision(3))}</text>`,
    );
  }
  parts.push(
    `<rect x="${m.left}" y="${m.top}" width="${W - m.left - m.right}" height="${H - m.top - m.bottom}" fill="none" stroke="#888"/>`,
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text transform="translate(16 ${H / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? " (log scale)" : ""}</text>`,
  );
  for (const s of series) {
    if (!s.band) continue;
    const upper = s.band.map(([, hi], j) => `${sx(s.points[j]![0]).toFixed(1)},${sy(hi).toFixed(1)}`);
    const lower = s.band.map(([lo], j) => `${sx(s.points[j]![0]).toFixed(1)},${sy(lo).toFixed(1)}`).reverse();
    parts.push(`<polygon points="${[...upper, ...lower].join(" ")}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`);
  }
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    if (s.points.length < 40)
      for (const p of s.points) parts.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    // Legend at the top right, as wide as its longest name (about 7 px a character at 12 px).
    const lx = W - m.right - 30 - 7 * Math.max(...series.map((x) => x.name.length));
    parts.push(
      `<rect x="${lx}" y="${m.top + 10 + i * 18}" width="12" height="3" fill="${s.color}"/><text x="${lx + 18}" ` +
        `y="${m.top + 15 + i * 18}">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>\n");
  return parts.join("\n");
}
