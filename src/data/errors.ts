import { FedflareError } from "../errors.ts";

export type DataErrorCode =
  | "jsonl_invalid"
  | "dataset_empty"
  | "dataset_too_small"
  | "partitioner_invalid"
  | "partition_out_of_range"
  | "partition_min_size_unmet"
  | "metric_inputs_mismatched";

/** A problem with a dataset a user gave, naming the line or the count at fault. */
export class DataError extends FedflareError<DataErrorCode> {}
