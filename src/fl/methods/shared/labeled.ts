import type { Example } from "../../../data/jsonl.ts";
import { type LabeledPrompt, labeledPrompts } from "../../../engine/train/evaluate.ts";

/** The partition's prompts whose completion is one of `labels`; refuses a partition with none. */
export function labeledFor(raw: readonly Example[], labels: readonly string[]): LabeledPrompt[] {
  const labeled = labeledPrompts(raw).filter((x) => labels.includes(x.label));
  if (labeled.length === 0)
    throw new Error(`no example of this client's partition is a prompt whose completion is one of ${JSON.stringify(labels)}`);
  return labeled;
}
