import { FedflareError } from "../errors.ts";

export type DataErrorCode = "jsonl_invalid" | "dataset_empty" | "dataset_too_small";

/** A problem with a dataset a user gave, naming the line or the count at fault. */
export class DataError extends FedflareError<DataErrorCode> {}
