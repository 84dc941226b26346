import { FedflareError } from "../errors.ts";

export type ModelErrorCode =
  | "config_invalid"
  | "config_unsupported"
  | "file_missing"
  | "weights_invalid"
  | "tensor_missing"
  | "tensor_shape"
  | "tensor_dtype"
  | "tensor_unexpected"
  | "tokenizer_invalid"
  | "adapter_invalid"
  | "input_invalid";

/** Failures of loading or running a model. */
export class ModelError extends FedflareError<ModelErrorCode> {}
