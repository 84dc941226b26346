// Plain-text tables for reports (benchmarks, run summaries). A column whose cells all start with a number ("3.2M",
// "12.5 %" included, "-" for none) is right-aligned so that magnitudes line up; other columns are left-aligned.

export type Cell = string | number;

export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((r) => headers.map((_, i) => String(r[i] ?? "")));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const right = headers.map((_, i) => text.length > 0 && text.every((r) => /^([-+]?\d|-$)/.test(r[i]!)) && text.some((r) => r[i] !== "-"));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...text.map(line)].join("\n");
}

/** Prints the table to stdout. */
export function printTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): void {
  console.log(formatTable(headers, rows));
}

/** A number with a fixed count of decimals and thousands separators: 12,345.6. */
export function fmt(x: number, decimals = 0): string {
  return x.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}
