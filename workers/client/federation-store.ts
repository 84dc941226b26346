// A client's own storage of one federation (ClientResources["store"]: FedKSeed's copy of the global model,
// top-k residuals, HetLoRA's held rank). A federation is named by its id and its creation time: an id can be
// reused once its federation is deleted, and the new federation must not start from the old one's state.
import { readBlob, type SqlExec, writeBlob } from "../../durable-objects/shared/blobs.ts";
import type { ClientResources } from "../../src/fl/methods/method.ts";

/** Federation ids hold no "/" (src/fl/shards.ts), so this prefix is one federation id's and no other's. */
const prefixOf = (federationId: string) => `store/${federationId}/`;

/**
 * The store of federation `federationId` created at `createdAt`. A write first drops what this client kept
 * for an earlier federation of the same id, which nothing reads again.
 */
export function federationStore(sql: SqlExec, federationId: string, createdAt: number): ClientResources["store"] {
  const ours = `${prefixOf(federationId)}${createdAt}/`;
  return {
    get: (name) => readBlob(sql, ours + name),
    put: (name, bytes) => {
      const any = prefixOf(federationId);
      sql.exec("DELETE FROM blobs WHERE substr(key, 1, ?) = ? AND substr(key, 1, ?) != ?", any.length, any, ours.length, ours);
      writeBlob(sql, ours + name, bytes);
    },
  };
}
