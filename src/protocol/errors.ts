/**
 * Base class for every error the protocol layer reports. `code` is a stable, machine-readable name
 * for the failure (one code per failure, so callers switch on it); `message` says what was wrong
 * and with which values, so a user can act on it.
 */
export class ProtocolError<Code extends string = string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.code = code;
  }
}
