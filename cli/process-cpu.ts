// CPU time of this process's descendants with a given command name (Linux /proc), e.g. the workerd
// process Miniflare starts: Workers' own clocks stand still while they compute (workerd's timing
// mitigation), so a client worker's CPU time can only be read from outside. Null where /proc is missing.
import { descendants, hasProc } from "./process-tree.ts";

export function descendantCpuSeconds(command: string, root = process.pid): number | null {
  if (!hasProc()) return null;
  return descendants(root, command).reduce((total, p) => total + p.cpuSeconds, 0);
}
