// CPU time of this process's descendants with a given command name (Linux /proc), e.g. the workerd
// process Miniflare starts: Workers' own clocks stand still while they compute (workerd's timing
// mitigation), so a client worker's CPU time can only be read from outside. Null where /proc is missing.
import { existsSync, readdirSync, readFileSync } from "node:fs";

/** Kernel clock ticks per second for /proc/<pid>/stat's times (USER_HZ, 100 on Linux for decades). */
const USER_HZ = 100;

interface Stat {
  pid: number;
  ppid: number;
  comm: string;
  cpuSeconds: number;
}

function readStat(pid: string): Stat | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name is parenthesised and may hold spaces: fields resume after the last ")".
    const close = s.lastIndexOf(")");
    const rest = s.slice(close + 2).split(" ");
    return { pid: Number(pid), ppid: Number(rest[1]), comm: s.slice(s.indexOf("(") + 1, close), cpuSeconds: (Number(rest[11]) + Number(rest[12])) / USER_HZ };
  } catch {
    return null;
  }
}

export function descendantCpuSeconds(command: string, root = process.pid): number | null {
  if (!existsSync("/proc/self/stat")) return null;
  const stats = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(readStat).filter((s): s is Stat => s !== null);
  const children = new Map<number, Stat[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  let total = 0;
  const visit = (pid: number) => {
    for (const c of children.get(pid) ?? []) {
      if (c.comm === command) total += c.cpuSeconds;
      visit(c.pid);
    }
  };
  visit(root);
  return total;
}
