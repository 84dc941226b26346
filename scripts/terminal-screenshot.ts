// Screenshots of a command as a terminal shows it (issue 22: `npm start`'s in-place progress): the command
// runs under util-linux `script`, so it sees a TTY; what it wrote is replayed into a headless xterm.js
// terminal, serialized as HTML and photographed by Debian's Chromium. One screenshot when `--when` first
// appears in the output (the progress block mid-round), one at the end.
// Run: node scripts/terminal-screenshot.ts [--when "round 2/"] [--out test-output/terminal] [--cols 110] [--rows 34] -- npm start
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import serializeAddon from "@xterm/addon-serialize";
import headless from "@xterm/headless";
import { chromium } from "playwright-core";

// Both packages are CommonJS: their classes come off the default export.
const { Terminal } = headless;
const { SerializeAddon } = serializeAddon;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    when: { type: "string", default: "round 2/" },
    out: { type: "string", default: "test-output/terminal" },
    cols: { type: "string", default: "110" },
    rows: { type: "string", default: "34" },
  },
});
if (positionals.length === 0) throw new Error("name the command after --, e.g. -- npm start");
const cols = Number(values.cols);
const rows = Number(values.rows);
const typescript = `${values.out}.typescript`;
mkdirSync(dirname(typescript), { recursive: true });
rmSync(typescript, { force: true });

/** The terminal's screen after `bytes` (less `script`'s own first and last lines), as HTML with its colours. */
async function screen(bytes: Uint8Array): Promise<string> {
  const text = new TextDecoder()
    .decode(bytes)
    .replace(/^Script started[^\n]*\n/, "")
    .replace(/\n?Script done[^\n]*\n?$/, "");
  const term = new Terminal({ cols, rows, allowProposedApi: true });
  const serialize = new SerializeAddon();
  term.loadAddon(serialize);
  await new Promise<void>((done) => term.write(text, done));
  return serialize.serializeAsHTML({ onlySelection: false, includeGlobalBackground: true });
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
async function photograph(html: string, file: string): Promise<void> {
  const page = await browser.newPage({ viewport: { width: cols * 9 + 40, height: rows * 18 + 40 } });
  await page.setContent(`<body style="margin:0;background:#000">${html}</body>`);
  await page.screenshot({ path: file, fullPage: true });
  await page.close();
  process.stderr.write(`wrote ${file}\n`);
}

// The command sees a TTY of cols × rows (stty inside the recorded shell), as a user's terminal would be.
const command = `stty cols ${cols} rows ${rows}; ${positionals.join(" ")}`;
const child = spawn("script", ["-q", "-f", "-e", "-c", command, typescript], { stdio: ["ignore", "ignore", "inherit"] });
const exited = new Promise<number | null>((done) => child.on("exit", done));
let midway = false;
for (let done = false; !done; ) {
  done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]);
  const bytes = (() => {
    try {
      return new Uint8Array(readFileSync(typescript));
    } catch {
      return new Uint8Array();
    }
  })();
  if (!midway && new TextDecoder().decode(bytes).includes(values.when)) {
    midway = true;
    await photograph(await screen(bytes), `${values.out}-midway.png`);
  }
  if (done) await photograph(await screen(bytes), `${values.out}-end.png`);
}
await browser.close();
const code = await exited;
if (code !== 0) throw new Error(`the command exited with ${code}`);
