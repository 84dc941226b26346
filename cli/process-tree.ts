// This process's descendants as Linux /proc shows them (e.g. the workerd processes Miniflare starts,
// which may sit below a wrapper), and which of them holds a listening TCP port. Readers return an
// empty answer where /proc is missing.
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";

/** Kernel clock ticks per second for /proc/<pid>/stat's times (USER_HZ, 100 on Linux for decades). */
const USER_HZ = 100;

export interface ProcessStat {
  pid: number;
  ppid: number;
  /** The command name (/proc/<pid>/comm, at most 15 characters). */
  comm: string;
  /** User plus system CPU time. */
  cpuSeconds: number;
}

export const hasProc = (): boolean => existsSync("/proc/self/stat");

function readStat(pid: string): ProcessStat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is parenthesised and may hold spaces: fields resume after the last ")".
    const close = s.lastIndexOf(")");
    const rest = s.slice(close + 2).split(" ");
    return {
      pid: Number(pid),
      ppid: Number(rest[1]),
      comm: s.slice(s.indexOf("(") + 1, close),
      cpuSeconds: (Number(rest[11]) + Number(rest[12])) / USER_HZ,
    };
  } catch {
    // The process ended while we read.
    return null;
  }
}

/** Every descendant of `root` (children, grandchildren, ...), optionally only those named `command`. */
export function descendants(root = process.pid, command?: string): ProcessStat[] {
  if (!hasProc()) return [];
  const stats = readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .map(readStat)
    .filter((s): s is ProcessStat => s !== null);
  const children = new Map<number, ProcessStat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  const found: ProcessStat[] = [];
  const visit = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      if (command === undefined || c.comm === command) found.push(c);
      visit(c.pid);
    }
  };
  visit(root);
  return found;
}

/** The inodes of the TCP sockets (IPv4 and IPv6) listening on `port`. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; local_address is ADDR:PORT in hex, st 0A is LISTEN.
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[3] === "0A" && parseInt(f[1]!.split(":")[1]!, 16) === port) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/** Which of `candidates` holds a socket listening on TCP `port` (its open file descriptors name the socket's inode). */
export function listenerOf(port: number, candidates: readonly ProcessStat[]): ProcessStat | null {
  const inodes = listeningInodes(port);
  for (const p of candidates) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p.pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p.pid}/fd/${fd}`))?.[1];
        if (inode && inodes.has(inode)) return p;
      } catch {
        // The descriptor closed while we read.
      }
    }
  }
  return null;
}
