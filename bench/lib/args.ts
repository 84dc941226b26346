// A benchmark's command line: node:util's parseArgs, with --help and a mistyped option answered by the
// options and their defaults, not a stack trace.
import { relative } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

export function benchArgs<O extends Options>(config: { options: O }): ReturnType<typeof parseArgs<{ options: O }>> {
  const script = relative(process.cwd(), process.argv[1] ?? "bench");
  const usage = () =>
    `usage: node ${script} ${Object.entries(config.options)
      .map(([name, o]) => (o.type === "boolean" ? `[--${name}]` : `[--${name} ${o.default ?? name.toUpperCase()}]`))
      .join(" ")}`;
  if (process.argv.slice(2).includes("--help")) {
    console.log(usage());
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (e) {
    console.error(`${script}: ${e instanceof Error ? e.message : String(e)}\n${usage()}`);
    process.exit(2);
  }
}
