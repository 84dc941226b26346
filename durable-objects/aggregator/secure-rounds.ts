// A secure round's phases in the aggregator (SecAgg+, src/secagg/protocol.ts; docs/ARCHITECTURE.md, "Secure
// aggregation"): each client's key-phase messages kept in SQLite as they arrive (a restart loses none), the
// masked inputs summed in Z_2^32 as they arrive (ring-sum.ts), each phase ended when every client it waits
// for has answered, by its deadline (the alarm) or by the operator, and at the end the masks removed a
// segment at a time and the weighted mean handed to the strategy (rounds.ts). The aggregator never holds an
// input unmasked: only the survivors' sum, once they have answered the unmask phase.
import { secureRound } from "../../src/secagg/federation.ts";
import { meanSegment, ratioSum } from "../../src/secagg/masked-update.ts";
import {
  type Advert,
  maskCount,
  type RecoveredSecrets,
  type RevealedShare,
  recoverSecrets,
  removeMasks,
  type SecAggRound,
} from "../../src/secagg/protocol.ts";
import { usableKey } from "../../src/secagg/keys.ts";
import { flatLayout } from "../../src/fl/flat-tensors.ts";
import { isSharded } from "../../src/fl/shards.ts";
import {
  type AdvertMessage,
  fromHex,
  parseSecAggMessage,
  type SecAggPhaseName,
  type SecAggView,
  type SecurePhase,
  type SharesMessage,
  type UnmaskMessage,
} from "../../src/protocol/secure-aggregation.ts";
import { deleteBlob } from "../shared/blobs.ts";
import type { Accumulator } from "./accumulator.ts";
import { AggregatorError, refusing } from "./errors.ts";
import { assertFreshNonce, spendNonce } from "./nonces.ts";
import { RING_SEGMENT, RingSum } from "./ring-sum.ts";
import type { Rounds } from "./rounds.ts";
import type { SecureInput } from "./sharded-rounds.ts";
import { type FederationStore, keys } from "./storage.ts";
import type { FederationView, RoundRow } from "./types.ts";

export type { SecAggView };

/**
 * Mask words one invocation expands and removes before the alarm takes the next rows (always at least one
 * row): a Durable Object's request or alarm has 30 s of CPU by default, and a large round's unmasking (many
 * dropped clients' pair masks over a large adapter) can take minutes. Counted, not timed: in production a
 * Worker's clock stands still between I/O (Cloudflare Workers, "Performance and timers"), so a time limit
 * would never end a slice of synchronous work. In workerd, bench/secagg-loopback.ts unmasked and closed a
 * round of 500 clients, 30% dropped after sharing (about 9·10⁸ mask words over 65,536 values), in 4.5 s.
 */
const UNMASK_SLICE_WORDS = 2 ** 30;

/** The phase each key-phase message belongs to. */
const PHASE_OF: Record<SecAggPhaseName, SecurePhase> = { advert: "advertise", shares: "share", unmask: "unmask" };

type MessageRow = { client_id: string; advert: string; shares: string | null; unmask: string | null };

export interface SecAggMessageRequest {
  federationId: string;
  round: number;
  clientId: string;
  nonce: string;
  /** The message's JSON (src/protocol/secure-aggregation.ts). */
  body: Uint8Array;
}

export interface SecAggReceipt {
  federationId: string;
  round: number;
  clientId: string;
  message: SecAggPhaseName;
  /** True when this answer repeats the one given to the same message before. */
  replayed: boolean;
  /** The round's phase after this message (it may have ended the phase). */
  phase: SecurePhase | "closed" | "failed";
}

export class SecureRounds {
  private readonly store: FederationStore;
  private readonly rounds: Rounds;
  /** Rounds whose unmasking runs in this instance now: its awaits let other events in, which must not start a second. */
  private readonly unmasking = new Set<string>();
  /** The parameters of the rounds this instance served last (params). */
  private readonly known = new Map<string, ReturnType<typeof secureRound>>();
  /**
   * The secrets rebuilt for the round this instance unmasks: the unmask answers are final once it starts, and
   * rebuilding them (a Shamir combine and a key check per client) in every slice would spend each slice's CPU again.
   */
  private readonly recovered = new Map<string, RecoveredSecrets>();

  constructor(store: FederationStore, rounds: Rounds) {
    this.store = store;
    this.rounds = rounds;
  }

  /** The round's SecAgg+ parameters and encoding, derived from the federation, the round and its sample. */
  params(fed: FederationView, r: RoundRow): ReturnType<typeof secureRound> {
    // A round's parameters never change (its config, number and sample): the graph, O(n · degree) to
    // build, is built once per round in this instance rather than on every message.
    const key = `${fed.id}/${r.round}/${fed.createdAt}`;
    const known = this.known.get(key);
    if (known) return known;
    // An old round's base version may be pruned (keepVersions): nothing of it is served any more.
    if (!this.store.hasVersion(fed.id, r.base_version))
      throw new AggregatorError("round_closed", `round ${r.round} of "${fed.id}" is ${r.status} and its base version was pruned`);
    const values = flatLayout(this.store.versionHeader(fed.id, r.base_version)).total;
    const params = secureRound(fed.config, fed, r.round, this.store.sampled(fed.id, r.round), values);
    if (this.known.size >= 4) this.known.delete(this.known.keys().next().value!);
    this.known.set(key, params);
    return params;
  }

  view(id: string, round: number, client: string): SecAggView {
    const fed = this.store.readBy(id, client);
    const r = this.store.roundRow(id, round);
    assertSampledSecure(id, r, client, this.store);
    const { round: params, enc, settings } = this.params(fed, r);
    const neighbours = params.graph.get(client)!;
    const rows = this.viewRows(id, round, client, [client, ...neighbours]);
    const view: SecAggView = {
      federationId: id,
      round,
      phase: r.status === "open" ? r.phase : r.status,
      deadline: r.deadline,
      context: params.context,
      threshold: params.threshold,
      length: params.length,
      range: enc.fp.range,
      bits: enc.fp.bits,
      maxWeight: enc.maxWeight,
      neighbours,
      ...(settings.noise ? { noise: settings.noise } : {}),
    };
    if (r.status !== "open" || r.phase === "advertise") return view;
    view.roster = Object.fromEntries(
      neighbours.filter((j) => rows.has(j)).map((j) => [j, JSON.parse(rows.get(j)!.advert) as AdvertMessage]),
    );
    if (r.phase === "share" || !rows.get(client)?.shared) return view;
    view.inbox = Object.fromEntries(
      neighbours.flatMap((j) => {
        const sealed = rows.get(j)?.to_me;
        return sealed ? [[j, sealed]] : [];
      }),
    );
    if (r.phase === "unmask") {
      const survivors = this.survivors(id, round);
      if (survivors.has(client))
        view.request = {
          survivors: neighbours.filter((j) => survivors.has(j)),
          dropped: neighbours.filter((j) => !survivors.has(j) && rows.get(j)?.shared),
        };
    }
    return view;
  }

  /** Accepts one key-phase message of a sampled client, exactly once (the same message again gets the first answer). */
  async receive(kind: SecAggPhaseName, m: SecAggMessageRequest, now: number): Promise<SecAggReceipt> {
    const fed = this.store.readBy(m.federationId, m.clientId);
    const r = this.store.roundRow(m.federationId, m.round);
    assertSampledSecure(fed.id, r, m.clientId, this.store);
    const message = refusing(`the ${kind} message`, () => parseSecAggMessage(kind, m.body));
    const text = JSON.stringify(message);
    const { round: params } = this.params(fed, r);
    const rows = this.rows(fed.id, m.round, [m.clientId, ...params.graph.get(m.clientId)!]);
    const mine = rows.get(m.clientId);
    const receipt = (replayed: boolean): SecAggReceipt => {
      const after = this.store.roundRow(fed.id, m.round);
      return {
        federationId: fed.id,
        round: m.round,
        clientId: m.clientId,
        message: kind,
        replayed,
        phase: after.status === "open" ? after.phase! : after.status,
      };
    };
    const prior = mine?.[kind === "advert" ? "advert" : kind];
    if (prior) {
      if (prior === text) return receipt(true);
      throw new AggregatorError("upload_conflict", `client "${m.clientId}" already sent another ${kind} message in round ${m.round}`);
    }
    if (r.status !== "open" || r.phase !== PHASE_OF[kind])
      throw new AggregatorError(
        "phase_closed",
        `round ${m.round} of "${fed.id}" is ${r.status === "open" ? `in its ${r.phase} phase` : r.status}; ` +
          `the ${kind} message belongs to its ${PHASE_OF[kind]} phase`,
      );
    if (now > r.deadline)
      throw new AggregatorError("phase_closed", `the ${r.phase} phase of round ${m.round} passed its deadline; it ends with what it has`);
    if (kind !== "advert" && !mine)
      throw new AggregatorError(
        "not_in_phase",
        `client "${m.clientId}" did not advertise keys in round ${m.round}, so it takes no part in it`,
      );
    assertFreshNonce(this.store.sql, m.clientId, m.nonce);
    if (kind === "advert") await this.checkAdvert(message as AdvertMessage);
    if (kind === "shares") this.checkShares(params, rows, m.clientId, message as SharesMessage);
    if (kind === "unmask") this.checkUnmask(params, rows, this.survivors(fed.id, m.round), m.clientId, message as UnmaskMessage);
    this.store.storage.transactionSync(() => {
      if (kind === "advert")
        this.store.sql.exec(
          "INSERT INTO secagg (federation_id, round, client_id, advert) VALUES (?, ?, ?, ?)",
          fed.id,
          m.round,
          m.clientId,
          text,
        );
      else
        this.store.sql.exec(
          `UPDATE secagg SET ${kind} = ? WHERE federation_id = ? AND round = ? AND client_id = ?`,
          text,
          fed.id,
          m.round,
          m.clientId,
        );
      spendNonce(this.store.sql, m.clientId, m.nonce, now);
    });
    if (this.waitingFor(fed.id, this.store.roundRow(fed.id, m.round)) === 0) await this.advance(fed.id, m.round, now);
    return receipt(false);
  }

  /** After a masked input: the input phase ends once every client that shared its keys has sent one. */
  async afterInput(id: string, round: number, now: number): Promise<"open" | "closed" | "failed"> {
    if (this.waitingFor(id, this.store.roundRow(id, round)) === 0) await this.advance(id, round, now);
    return this.store.roundRow(id, round).status;
  }

  /** A round in its input phase: the clients that shared their keys, and the masked inputs' shape (what a shard admits). */
  inputOf(id: string, round: number): SecureInput {
    const fed = this.store.get(id);
    const { round: params, enc } = this.params(fed, this.store.roundRow(id, round));
    const sharers = [...this.rows(id, round)].filter(([, x]) => x.shares).map(([c]) => c);
    return { sharers, shape: { length: params.length, maxWeight: enc.maxWeight } };
  }

  /** Refuses a masked input from a client that did not share its keys (its masks could not be removed). */
  admitInput(id: string, r: RoundRow, client: string): void {
    if (r.phase !== "input")
      throw new AggregatorError(
        "phase_closed",
        `round ${r.round} of "${id}" is in its ${r.phase} phase; masked inputs belong to its input phase`,
      );
    if (!this.rows(id, r.round, [client]).get(client)?.shares)
      throw new AggregatorError(
        "not_in_phase",
        `client "${client}" did not share its keys in round ${r.round}, so its input cannot be unmasked`,
      );
  }

  /**
   * Ends the round's current phase (every client answered, its deadline passed, or the operator closed
   * it): the next phase opens if enough clients remain for the round to be unmasked, else the round fails
   * with its reason; the end of the unmask phase unmasks the sum and closes the round.
   */
  async advance(id: string, round: number, now: number): Promise<void> {
    const fed = this.store.get(id);
    const r = this.store.roundRow(id, round);
    if (r.status !== "open" || r.phase === null) return;
    if (r.phase === "unmask" || r.phase === "unmasking") return this.unmaskAndClose(id, round);
    // A sharded round's inputs are in its shards: sealed and merged first, so the count and the sum are here.
    if (r.phase === "input" && isSharded(fed.config)) return this.rounds.sharded.collect(id, round, () => this.endPhase(id, round, now));
    return this.endPhase(id, round, now);
  }

  /** Ends the current key or input phase: the next opens with enough clients, else the round fails. */
  private async endPhase(id: string, round: number, now: number): Promise<void> {
    const fed = this.store.get(id);
    const r = this.store.roundRow(id, round);
    if (r.status !== "open" || r.phase === null || r.phase === "unmask" || r.phase === "unmasking") return;
    const { settings } = this.params(fed, r);
    const need = Math.max(settings.threshold, fed.config.minClients);
    const counts = this.counts(id, round);
    const [have, what, next, seconds] = {
      advertise: [counts.adverts, "advertised keys", "share", settings.phaseSeconds] as const,
      share: [counts.sharers, "shared their keys", "input", fed.config.deadlineSeconds] as const,
      input: [r.uploads, "sent their masked input", "unmask", settings.phaseSeconds] as const,
    }[r.phase];
    if (have < need) {
      this.rounds.finish(
        id,
        round,
        now,
        "fail",
        `only ${have} clients ${what} in the ${r.phase} phase; the round needs ${need} (threshold and minClients)`,
      );
      return;
    }
    this.store.sql.exec(
      "UPDATE rounds SET phase = ?, deadline = ? WHERE federation_id = ? AND round = ?",
      next,
      now + seconds * 1000,
      id,
      round,
    );
    if (next === "input" && isSharded(fed.config))
      this.rounds.sharded.replan(id, round, fed.config.shards!, this.inputOf(id, round).sharers);
    await this.rounds.armAlarm();
    if (this.waitingFor(id, this.store.roundRow(id, round)) === 0) await this.advance(id, round, now);
  }

  /** The secure round's weighted mean from its unmasked sum (written by unmaskAndClose), for the close. */
  mean(fed: FederationView, r: RoundRow): Pick<Accumulator, "mean" | "clear"> {
    const { round: params, enc, settings } = this.params(fed, r);
    const unmasked = new RingSum(this.store.sql, keys.unmasked(fed.id, r.round), params.length);
    // With distributed DP every weight is 1: the count, not a sum a client could have skewed.
    const ratios = settings.noise ? r.uploads : ratioSum(unmasked.read(enc.values, 1)[0]!, enc, r.uploads);
    return {
      mean: (start, n) => meanSegment(unmasked.read(start, n), enc, r.uploads, ratios),
      clear: () => this.clear(fed.id, r.round),
    };
  }

  /** Drops what a secure round stored: the sums and the key-phase messages. */
  clear(id: string, round: number): void {
    deleteBlob(this.store.sql, keys.sum(id, round));
    deleteBlob(this.store.sql, keys.unmasked(id, round));
    this.store.sql.exec("DELETE FROM secagg WHERE federation_id = ? AND round = ?", id, round);
  }

  /** Clients whose answer the current phase still waits for. */
  private waitingFor(id: string, r: RoundRow): number {
    if (r.status !== "open") return -1;
    const { adverts, sharers, unmasked } = this.counts(id, r.round);
    switch (r.phase) {
      case "advertise":
        return this.store.sampleSize(id, r.round) - adverts;
      case "share":
        return adverts - sharers;
      case "input":
        return sharers - r.uploads;
      case "unmask":
        return r.uploads - unmasked;
      default:
        return -1;
    }
  }

  /**
   * Rebuilds the survivors' self-mask seeds and the dropped clients' masking keys from the unmask answers,
   * removes the masks from the sum a segment at a time into the unmasked sum, then closes the round; a
   * client's material that does not rebuild (a wrong share, a key that does not agree) fails the round with
   * its reason, never the request. The phase is stored first with a deadline a phase away: a restart
   * part-way resumes it from the alarm then (a deadline of now would wake the alarm again and again while
   * this instance is still at work).
   */
  private async unmaskAndClose(id: string, round: number): Promise<void> {
    const key = `${id}/${round}`;
    if (this.unmasking.has(key)) return;
    this.unmasking.add(key);
    try {
      const fed = this.store.get(id);
      const { settings } = this.params(fed, this.store.roundRow(id, round));
      this.store.sql.exec(
        "UPDATE rounds SET phase = 'unmasking', deadline = ? WHERE federation_id = ? AND round = ?",
        Date.now() + settings.phaseSeconds * 1000,
        id,
        round,
      );
      await this.rounds.armAlarm();
      const outcome = await this.unmaskSum(fed, round);
      // The operator may have failed the round while the masks were computed.
      if (this.store.roundRow(id, round).status !== "open") return;
      if (outcome === "more")
        // The next slice from the alarm, at once: each invocation stays within the platform's CPU limit.
        this.store.sql.exec("UPDATE rounds SET deadline = ? WHERE federation_id = ? AND round = ?", Date.now(), id, round);
      else if (outcome === "done") this.rounds.finish(id, round, Date.now(), "close");
      else this.rounds.finish(id, round, Date.now(), "fail", `unmasking failed: ${outcome.failure}`);
      await this.rounds.armAlarm();
    } finally {
      this.unmasking.delete(key);
    }
  }

  /**
   * The unmasked sum written a row at a time, from the first row not yet written (a restart or the previous
   * slice left the others), as many rows as UNMASK_SLICE_WORDS of masks allow: "done", "more" (a slice
   * ended), or why it could not be.
   */
  private async unmaskSum(fed: FederationView, round: number): Promise<"done" | "more" | { failure: string }> {
    const id = fed.id;
    try {
      const { round: params } = this.params(fed, this.store.roundRow(id, round));
      const rows = this.rows(id, round);
      const adverts = new Map([...rows].map(([c, x]) => [c, advertOf(JSON.parse(x.advert) as AdvertMessage)]));
      const survivors = this.survivors(id, round);
      const key = `${id}/${round}/${fed.createdAt}`;
      const recovered =
        this.recovered.get(key) ??
        (await recoverSecrets(
          params,
          adverts,
          new Set([...rows].filter(([, x]) => x.shares).map(([c]) => c)),
          survivors,
          new Map([...rows].filter(([, x]) => x.unmask).map(([c, x]) => [c, revealedOf(JSON.parse(x.unmask!) as UnmaskMessage)] as const)),
        ));
      this.recovered.clear();
      this.recovered.set(key, recovered);
      const masked = new RingSum(this.store.sql, keys.sum(id, round), params.length);
      const unmasked = new RingSum(this.store.sql, keys.unmasked(id, round), params.length);
      // The caller sees a round no longer open (the operator failed it meanwhile) for itself.
      const open = () => this.store.roundRow(id, round).status === "open";
      const rowWords = Math.min(RING_SEGMENT, params.length);
      const slice = Math.max(1, Math.floor(UNMASK_SLICE_WORDS / (Math.max(1, maskCount(params, survivors, recovered)) * rowWords)));
      const complete = await masked.transformInto(
        unmasked,
        (start, row) => removeMasks(params, adverts, survivors, recovered, start, row),
        open,
        slice,
      );
      return complete ? "done" : "more";
    } catch (e) {
      return { failure: e instanceof Error ? e.message : String(e) };
    }
  }

  /**
   * A sharer's shares go to exactly its neighbours that advertised (their keys were checked then): each pair
   * mask is then added by both of its clients or by neither, and a dropped client's pair masks are those
   * with every surviving neighbour, which the unmasking removes. Enough of them to meet the threshold.
   */
  private checkShares(params: SecAggRound, rows: Map<string, MessageRow>, client: string, m: SharesMessage): void {
    const advertised = params.graph.get(client)!.filter((j) => rows.has(j));
    const to = new Set(Object.keys(m.shares));
    const stranger = [...to].find((j) => !advertised.includes(j));
    if (stranger !== undefined)
      throw new AggregatorError(
        "message_invalid",
        `the shares message: "${stranger}" is not a neighbour of "${client}" that advertised keys`,
      );
    const missing = advertised.find((j) => !to.has(j));
    if (missing !== undefined)
      throw new AggregatorError(
        "message_invalid",
        `the shares message holds none for "${missing}": a client shares with every neighbour that advertised`,
      );
    if (to.size < params.threshold)
      throw new AggregatorError("message_invalid", `the shares message holds ${to.size} shares; the threshold is ${params.threshold}`);
  }

  /** An advert's keys must agree with a key of ours: a low-order X25519 point would break every neighbour's masks. */
  private async checkAdvert(m: AdvertMessage): Promise<void> {
    for (const [name, hex] of [
      ["encryptionKey", m.encryptionKey],
      ["maskingKey", m.maskingKey],
    ] as const)
      if (!(await usableKey(fromHex(hex))))
        throw new AggregatorError("message_invalid", `the advert message: ${name} is not a usable X25519 public key (a low-order point)`);
  }

  /**
   * A survivor reveals, per neighbour that shared with it, the seed share of a survivor or the key share of
   * a dropped client, as the request asked; never another kind, never for a client it holds no share of.
   */
  private checkUnmask(params: SecAggRound, rows: Map<string, MessageRow>, survivors: Set<string>, client: string, m: UnmaskMessage): void {
    if (!survivors.has(client))
      throw new AggregatorError(
        "not_in_phase",
        `client "${client}" sent no masked input in round ${params.context}; only survivors unmask`,
      );
    for (const [peer, { kind }] of Object.entries(m.shares)) {
      const held = this.sharesOf(rows.get(peer))?.[client] !== undefined && params.graph.get(client)!.includes(peer);
      const asked = survivors.has(peer) ? "seed" : "key";
      if (!held || kind !== asked)
        throw new AggregatorError(
          "message_invalid",
          held
            ? `the unmask message reveals a ${kind} share of "${peer}"; the round asks for its ${asked} share`
            : `the unmask message reveals a share of "${peer}", which did not share its keys with "${client}"`,
        );
    }
  }

  /** The round's messages by client: of `only` these clients (a client and its neighbours), or of all. */
  private rows(id: string, round: number, only?: readonly string[]): Map<string, MessageRow> {
    const query = "SELECT client_id, advert, shares, unmask FROM secagg WHERE federation_id = ? AND round = ?";
    const rows = only
      ? this.store.sql.exec<MessageRow>(`${query} AND client_id IN (SELECT value FROM json_each(?))`, id, round, JSON.stringify(only))
      : this.store.sql.exec<MessageRow>(query, id, round);
    return new Map(rows.toArray().map((x) => [x.client_id, x]));
  }

  /**
   * What a client's view needs of its own and its neighbours' rows: each advert, whether it shared, and the
   * one sealed share addressed to `client` (picked out by SQLite, so a poll does not parse every neighbour's
   * shares; ids are letters, digits, '.', '_' and '-', safe inside a quoted JSON path).
   */
  private viewRows(id: string, round: number, client: string, only: readonly string[]) {
    const rows = this.store.sql
      .exec<{ client_id: string; advert: string; shared: number; to_me: string | null }>(
        "SELECT client_id, advert, shares IS NOT NULL AS shared, json_extract(shares, ?) AS to_me FROM secagg " +
          "WHERE federation_id = ? AND round = ? AND client_id IN (SELECT value FROM json_each(?))",
        `$.shares."${client}"`,
        id,
        round,
        JSON.stringify(only),
      )
      .toArray();
    return new Map(rows.map((x) => [x.client_id, x]));
  }

  /** How many clients advertised, shared and answered the unmask request. */
  private counts(id: string, round: number): { adverts: number; sharers: number; unmasked: number } {
    return this.store.sql
      .exec<{ adverts: number; sharers: number; unmasked: number }>(
        "SELECT COUNT(*) AS adverts, COUNT(shares) AS sharers, COUNT(unmask) AS unmasked FROM secagg WHERE federation_id = ? AND round = ?",
        id,
        round,
      )
      .one();
  }

  private sharesOf(row: MessageRow | undefined): Record<string, string> | undefined {
    return row?.shares ? (JSON.parse(row.shares) as SharesMessage).shares : undefined;
  }

  /** The clients whose masked input the round accepted. */
  private survivors(id: string, round: number): Set<string> {
    return new Set(
      this.store.sql
        .exec<{ client_id: string }>("SELECT client_id FROM receipts WHERE federation_id = ? AND round = ?", id, round)
        .toArray()
        .map((x) => x.client_id),
    );
  }
}

/** A client's request about a round must be about a secure round that sampled it. */
function assertSampledSecure(
  id: string,
  r: RoundRow,
  client: string,
  store: FederationStore,
): asserts r is RoundRow & { phase: SecurePhase } {
  if (r.phase === null) throw new AggregatorError("not_in_phase", `round ${r.round} of "${id}" is not a secure round`);
  if (!store.isSampled(id, r.round, client))
    throw new AggregatorError("client_not_sampled", `client "${client}" was not sampled for round ${r.round}`);
}

const advertOf = (m: AdvertMessage): Advert => ({
  encryptionKey: fromHex(m.encryptionKey),
  maskingKey: fromHex(m.maskingKey),
  seedDigest: fromHex(m.seedDigest),
});

const revealedOf = (m: UnmaskMessage): Map<string, RevealedShare> =>
  new Map(Object.entries(m.shares).map(([peer, s]) => [peer, { kind: s.kind, share: fromHex(s.share) }]));
