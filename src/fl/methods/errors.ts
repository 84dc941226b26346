import { FedflareError } from "../../errors.ts";

export type MethodErrorCode =
  /** A method config that does not fit the model or the federation; the message names the field. */
  | "method_invalid"
  /** No method of this type is registered on this side (server, client or run). */
  | "method_unknown"
  /** An upload that would leave a version invalid (a distribution that is not one, a negative step size). */
  | "update_invalid"
  /** A derived read of a version that does not exist (a view of a pruned version, a bad parameter). */
  | "view_invalid";

/** The one error type of federated methods: their configs, their uploads and their derived reads. */
export class MethodError extends FedflareError<MethodErrorCode> {}
