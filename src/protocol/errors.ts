import * as v from "valibot";
import { FedflareError } from "../errors.ts";

/** Errors of the wire formats (safetensors, message bodies). */
export class ProtocolError<Code extends string = string> extends FedflareError<Code> {}

/** A refusal naming `what`, the first issue's field (its dot path) and valibot's message for it. */
export function firstIssue(issues: readonly v.BaseIssue<unknown>[], what: string): string {
  const issue = issues[0]!;
  return `${what}: field "${v.getDotPath(issue) ?? "(root)"}": ${issue.message}`;
}
