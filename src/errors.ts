import type * as v from "valibot";
import { getDotPath } from "valibot";

/**
 * Base class of every error fedflare reports to a user. `code` is a stable, machine-readable name for
 * the failure (one code per failure, so callers switch on it); `message` says what was wrong and with
 * which values, so a user can act on it.
 */
export class FedflareError<Code extends string = string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A refusal naming `what` (when given), the first issue's field (its dot path, under `under`) and valibot's
 * message for it; a field missing is named so, and a field a strict object does not have is named as unknown,
 * with the closest field `schema` has there (a misspelling) or the fields it has.
 */
export function firstIssue(
  issues: readonly v.BaseIssue<unknown>[],
  what: string,
  o: { schema?: v.GenericSchema; under?: string } = {},
): string {
  const issue = issues[0]!;
  const dot = getDotPath(issue);
  const path = o.under ? [o.under, dot].filter(Boolean).join(".") : (dot ?? "(root)");
  const head = what ? `${what}: ` : "";
  // An object's key issue is a key it lacks (expected: the key) or, a strict object's, a key it does not have
  // (expected: never).
  if (["strict_object", "loose_object", "object"].includes(issue.type) && issue.received === "undefined" && dot)
    return `${head}field "${path}" is missing`;
  if (issue.type !== "strict_object" || issue.expected !== "never") return `${head}field "${path}": ${issue.message}`;
  const known = o.schema && fieldsAt(o.schema, issue.path ?? []);
  const unknown = String(issue.path?.at(-1)?.key ?? "");
  const closest = known && nearest(unknown, known);
  const hint = !known?.length
    ? ""
    : closest
      ? `; did you mean "${closest}"?`
      : `; the fields here are ${known.map((k) => `"${k}"`).join(", ")}`;
  return `${head}unknown field "${path}"${hint}`;
}

type Node = {
  entries?: Record<string, Node>;
  wrapped?: Node;
  item?: Node;
  value?: Node;
  options?: Node[];
  key?: string;
  literal?: unknown;
};

/**
 * The fields of the strict object that `schema` holds where `path` (an issue's, its last key the unknown one)
 * ends: through optional wrappers, arrays, records, and a variant's option by the input's discriminator.
 */
function fieldsAt(schema: v.GenericSchema, path: readonly { key: unknown; input: unknown }[]): string[] | undefined {
  const unwrap = (n: Node | undefined) => {
    let at = n;
    while (at?.wrapped) at = at.wrapped;
    return at;
  };
  const pick = (n: Node | undefined, input: unknown) => {
    if (!n?.options || !n.key) return n;
    const tag = (input as Record<string, unknown> | null)?.[n.key];
    return n.options.map(unwrap).find((o) => o?.entries?.[n.key!]?.literal === tag) ?? n;
  };
  let node = unwrap(schema as Node);
  for (let i = 0; i < path.length; i++) {
    node = pick(node, path[i]!.input);
    if (i < path.length - 1) node = unwrap(node?.entries?.[String(path[i]!.key)] ?? node?.item ?? node?.value);
  }
  return node?.entries ? Object.keys(node.entries) : undefined;
}

/** The candidate within two edits of `word` (Levenshtein), the closest first; none if none is. */
function nearest(word: string, candidates: readonly string[]): string | undefined {
  const distance = (a: string, b: string) => {
    let row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++)
        next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1)));
      row = next;
    }
    return row[b.length]!;
  };
  const scored = candidates.map((c) => [c, distance(word, c)] as const).sort((x, y) => x[1] - y[1]);
  return scored[0] && scored[0][1] <= 2 ? scored[0][0] : undefined;
}
