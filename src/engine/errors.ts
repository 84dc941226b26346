/** Failures of loading or running a model, with a stable code and a message a user can act on. */
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

export class ModelError extends Error {
  override readonly name = "ModelError";
  readonly code: ModelErrorCode;

  constructor(code: ModelErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
