// What `fedflare run` shows while a round runs. In a terminal: one block per round redrawn in place, a
// header (the round, uploads, elapsed and estimated time left) and a bar per client, drawn by cli-progress;
// elsewhere (CI, a pipe) a line each time a client's state changes; --json: each change as a JSON line;
// --quiet: only warnings. Lines worth keeping (a round's summary) print above the block.
import { MultiBar, type SingleBar } from "cli-progress";

export interface ClientState {
  id: string;
  /** "queued", "training", "uploaded", "failed", ... as the client's job reports it. */
  status: string;
  stepsDone: number;
  steps: number;
}

export interface RoundState {
  round: number;
  rounds: number;
  clients: ClientState[];
  uploads: number;
  elapsedMs: number;
}

export interface Progress {
  /** The open round as it stands; called on every poll. */
  round(state: RoundState): void;
  /** A line worth keeping. */
  line(text: string): void;
  /** A line shown even with --quiet (a client's failure). */
  warn(text: string): void;
  /** The round ended: its block stays as last drawn. */
  endRound(): void;
}

export type ProgressMode = "auto" | "lines" | "terminal" | "json" | "quiet";

/** A client the round waits for no more: it uploaded, failed, or cannot be reached. */
const finished = (c: ClientState) => c.status === "uploaded" || c.status === "failed" || c.status.startsWith("unreachable");

/** The share of the round's work done: finished clients count whole, training ones by their steps. */
export function roundShare(s: RoundState): number {
  if (s.clients.length === 0) return 0;
  const each = s.clients.map((c) => (finished(c) ? 1 : c.status === "training" ? Math.min(1, c.stepsDone / Math.max(1, c.steps)) : 0));
  return each.reduce((a, b) => a + b, 0) / each.length;
}

/** "1 m 05 s" or "42 s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
}

/** Time left at the rate so far; unknown until some work is done. */
export function timeLeft(s: RoundState): string {
  const share = roundShare(s);
  return share > 0 && share < 1 ? duration((s.elapsedMs * (1 - share)) / share) : share >= 1 ? "0 s" : "?";
}

const clientWord = (c: ClientState) => (c.status === "training" ? `step ${c.stepsDone}/${c.steps}` : c.status);

/** The line a round's state prints as without a terminal (what `npm start` printed before the block existed). */
export function stateLine(s: RoundState): string {
  const clients = s.clients.map((c) => `${c.id} ${clientWord(c)}`).join("  ");
  return `round ${s.round}/${s.rounds}  ${clients}  uploads ${s.uploads}/${s.clients.length}`;
}

export function progressFor(mode: ProgressMode, out: NodeJS.WriteStream): Progress {
  const resolved = mode === "auto" ? (out.isTTY ? "terminal" : "lines") : mode;
  const write = (text: string) => void out.write(`${text}\n`);
  switch (resolved) {
    case "quiet":
      return { round() {}, line() {}, warn: write, endRound() {} };
    case "json": {
      let shown = "";
      const event = (e: object) => write(JSON.stringify(e));
      return {
        round(s) {
          const text = JSON.stringify(s.clients) + s.uploads;
          if (text === shown) return;
          shown = text;
          event({ event: "round", ...s, share: roundShare(s) });
        },
        line: (text) => event({ event: "line", text }),
        warn: (text) => event({ event: "warning", text }),
        endRound() {
          shown = "";
        },
      };
    }
    case "lines": {
      let shown = "";
      return {
        round(s) {
          const text = stateLine(s);
          if (text === shown) return;
          shown = text;
          write(text);
        },
        line: write,
        warn: write,
        endRound() {
          shown = "";
        },
      };
    }
    case "terminal":
      return terminalProgress(out);
  }
}

/** The in-place block: a header bar and one bar per client, redrawn by cli-progress. */
function terminalProgress(out: NodeJS.WriteStream): Progress {
  let block: { bars: MultiBar; header: SingleBar; clients: Map<string, SingleBar> } | null = null;
  return {
    round(s) {
      if (!block) {
        const bars = new MultiBar({
          stream: out,
          format: "  {id} [{bar}] {word}",
          barsize: 30,
          barCompleteChar: "█",
          barIncompleteChar: "░",
          hideCursor: true,
          clearOnComplete: false,
          autopadding: true,
          // A line logged above the block moves it down: every bar is redrawn, changed or not.
          forceRedraw: true,
          fps: 5,
        });
        const header = bars.create(1, 0, {}, { format: "{title}" });
        const width = Math.max(...s.clients.map((c) => c.id.length));
        const clients = new Map(s.clients.map((c) => [c.id, bars.create(Math.max(1, c.steps), 0, { id: c.id.padEnd(width), word: "" })]));
        block = { bars, header, clients };
      }
      block.header.update(0, {
        title:
          `round ${s.round}/${s.rounds}  uploads ${s.uploads}/${s.clients.length}  ` +
          `elapsed ${duration(s.elapsedMs)}  left ${timeLeft(s)}`,
      });
      for (const c of s.clients) {
        const done = c.status === "uploaded" ? c.steps : c.status === "training" ? c.stepsDone : 0;
        block.clients.get(c.id)?.update(Math.min(done, c.steps), { word: clientWord(c) });
      }
      // Drawn now, not at cli-progress's next tick: a poll's state shows at once.
      block.bars.update();
    },
    line(text) {
      if (!block) return void out.write(`${text}\n`);
      block.bars.log(`${text}\n`);
      block.bars.update();
    },
    warn(text) {
      this.line(text);
    },
    endRound() {
      block?.bars.stop();
      block = null;
    },
  };
}
