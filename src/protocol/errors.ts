import { FedflareError } from "../errors.ts";

/** Errors of the wire formats (safetensors, message bodies). */
export class ProtocolError<Code extends string = string> extends FedflareError<Code> {}
