// The Workers platform's limits that production enforces and local workerd does not (Cloudflare's
// Workers and Durable Objects limits pages): our code keeps inside them by construction.

/** A Durable Object RPC argument or return value, serialized. */
export const RPC_MAX_BYTES = 32 * 2 ** 20;
/** A SQLite row, string or BLOB in a Durable Object. */
export const SQLITE_VALUE_MAX_BYTES = 2_000_000;
/** A SQL statement's text, and the parameters bound to one statement. */
export const SQLITE_STATEMENT_MAX_BYTES = 100_000;
export const SQLITE_MAX_BINDINGS = 100;
/** What one SQLite-backed Durable Object may store. */
export const DURABLE_OBJECT_STORAGE_MAX_BYTES = 10 * 10 ** 9;
/** An isolate's memory. */
export const ISOLATE_MAX_BYTES = 128 * 2 ** 20;

/**
 * The largest upload (and version) that crosses one RPC call whole: the 32 MiB limit less 64 KiB for the
 * call's other fields and their serialization.
 */
export const MAX_UPLOAD_BYTES = RPC_MAX_BYTES - 64 * 1024;

/**
 * The largest adapter (float32 bytes of one version) a federation may have: an upload of it, with up to
 * 1 MiB of safetensors header, must cross one RPC call. Memory does not bind first: the aggregator folds
 * and closes a segment at a time (durable-objects/aggregator/accumulator.ts), holding the upload and a
 * few segments (bench/aggregator measures the peak). Larger adapters need their bytes outside RPC
 * (R2 objects read by range), which this limit refuses at creation rather than failing at the first upload.
 */
export const MAX_ADAPTER_BYTES = MAX_UPLOAD_BYTES - 2 ** 20;
