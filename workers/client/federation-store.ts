// A client's own storage of one federation (ClientResources["store"]: FedKSeed's copy of the global model,
// top-k residuals, HetLoRA's held rank). A federation is named by its id and its creation time: an id can be
// reused once its federation is deleted, and the new federation must not start from the old one's state.
import { deleteBlob, readBlob, type SqlExec, writeBlob } from "../../durable-objects/shared/blobs.ts";
import type { ClientResources } from "../../src/fl/methods/method.ts";

/** Federation ids hold no "/" (src/fl/shards.ts), so this prefix is one federation id's and no other's. */
const prefixOf = (federationId: string) => `store/${federationId}/`;

/**
 * The store of federation `federationId` created at `createdAt`. A write first drops what this client kept
 * for earlier federations of the same id, which nothing reads again; a later one's is left alone, so a stale
 * job of an earlier federation cannot wipe it.
 */
export function federationStore(sql: SqlExec, federationId: string, createdAt: number): ClientResources["store"] {
  const any = prefixOf(federationId);
  const ours = `${any}${createdAt}/`;
  return {
    get: (name) => readBlob(sql, ours + name),
    put: (name, bytes) => {
      // Every key under the prefix, by the primary key's index: "0" follows "/".
      const keys = sql
        .exec<{ key: string }>("SELECT DISTINCT key FROM blobs WHERE key >= ? AND key < ?", any, `${any.slice(0, -1)}0`)
        .toArray();
      for (const { key } of keys) if (Number(key.slice(any.length).split("/")[0]) < createdAt) deleteBlob(sql, key);
      writeBlob(sql, ours + name, bytes);
    },
  };
}
