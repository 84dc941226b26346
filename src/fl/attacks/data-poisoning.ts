// Data poisoning for tests and benchmarks of the robust rules: a malicious client trains honestly on
// labels it has flipped (Tolpegin et al. 2020, "Data Poisoning Attacks Against Federated Learning Systems"),
// so its update is a plausible one pointing the wrong way.
import type { Example } from "../../data/jsonl.ts";
import { FlError } from "../errors.ts";

/** A classification partition with each completion " label" replaced by the next label's (spam ↔ ham). */
export function flipLabels(examples: readonly Example[], labels: readonly string[]): Example[] {
  return examples.map((e) => {
    if (!("completion" in e)) throw new FlError("robust_invalid", "label flipping needs classification examples (a prompt and a label)");
    const at = labels.indexOf(e.completion.trim());
    if (at < 0) throw new FlError("robust_invalid", `label flipping: the completion "${e.completion}" is none of ${labels.join(", ")}`);
    return { ...e, completion: ` ${labels[(at + 1) % labels.length]}` };
  });
}
