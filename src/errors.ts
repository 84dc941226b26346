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

/** A refusal naming `what`, the first issue's field (its dot path) and valibot's message for it. */
export function firstIssue(issues: readonly v.BaseIssue<unknown>[], what: string): string {
  const issue = issues[0]!;
  return `${what}: field "${getDotPath(issue) ?? "(root)"}": ${issue.message}`;
}
