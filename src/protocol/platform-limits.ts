// The Workers platform's limits that production enforces and local workerd does not (Cloudflare's
// Workers and Durable Objects limits pages): our code keeps inside them by construction.

/** A Durable Object RPC argument or return value, serialized. */
export const RPC_MAX_BYTES = 32 * 2 ** 20;
/** A SQLite row, string or BLOB in a Durable Object. */
export const SQLITE_VALUE_MAX_BYTES = 2_000_000;
/** A SQL statement's text, and the parameters bound to one statement. */
export const SQLITE_STATEMENT_MAX_BYTES = 100_000;
export const SQLITE_MAX_BINDINGS = 100;
/** An isolate's memory. */
export const ISOLATE_MAX_BYTES = 128 * 2 ** 20;

/**
 * The largest upload (and version) that crosses one RPC call whole: the 32 MiB limit less 2 MiB for the
 * call's other fields and serialization.
 */
export const MAX_UPLOAD_BYTES = 30 * 2 ** 20;

/**
 * The largest adapter (float32 bytes of one version) a federation may have: closing a round holds the
 * global version, the running sum, the mean, the next version and its encoding (measured by
 * bench/aggregator), plus the strategy's slots (up to two more copies), inside a 128 MB isolate.
 */
export const MAX_ADAPTER_BYTES = 8 * 2 ** 20;
