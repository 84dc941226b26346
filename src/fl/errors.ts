import { FedflareError } from "../errors.ts";

export type FlErrorCode =
  /** A strategy config (or a strategy argument such as mu) is invalid; the message names the field. */
  | "strategy_invalid"
  /** Two tensor maps that must have the same tensors differ; the message names the tensor. */
  | "tensor_mismatch"
  /** A NaN or infinity where finite numbers are required; the message names the tensor (or metric) and index. */
  | "non_finite"
  /** A client weight (number of examples) that is not a finite positive number. */
  | "weight_invalid"
  /** A server state that does not fit the strategy or the global tensors. */
  | "state_invalid"
  /** An adapter folder whose description (adapter_config.json) is missing or malformed. */
  | "adapter_invalid"
  /** An inference API refused a request, or answered without what the method needs (echoed log-probs). */
  | "api_failed"
  /** A robust aggregation rule that cannot run on the round's updates (too few for the attackers it assumes). */
  | "robust_invalid";

/** A federated-learning failure: aggregation, strategies, server state. */
export class FlError extends FedflareError<FlErrorCode> {}
