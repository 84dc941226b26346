export type DataErrorCode = "jsonl_invalid" | "dataset_empty" | "dataset_too_small";

/** A problem with a dataset a user gave, naming the line or the count at fault. */
export class DataError extends Error {
  override readonly name = "DataError";
  readonly code: DataErrorCode;

  constructor(code: DataErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
