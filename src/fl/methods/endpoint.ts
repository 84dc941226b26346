// The inference endpoint's extensions: the built-in methods' endpoint sides (a method without one is
// absent). A deployment adds its own with endpointExtensions.add before the endpoint starts; the
// endpoint serves, counts and documents each (workers/inference-endpoint/app.ts, openapi.ts).
import { MethodError } from "./errors.ts";
import { fedbptEndpoint } from "./fedbpt/endpoint.ts";
import { fedkseedEndpoint } from "./fedkseed/endpoint.ts";
import type { EndpointExtension } from "./method.ts";

export class EndpointExtensions {
  private readonly byPath = new Map<string, EndpointExtension>();

  constructor(extensions: readonly EndpointExtension[]) {
    for (const x of extensions) this.add(x);
  }

  /** Refuses a path outside /v1/ (it would skip the endpoint's token and body limit), or a path or counter already taken. */
  add(x: EndpointExtension): EndpointExtension {
    if (!x.path.startsWith("/v1/"))
      throw new MethodError("method_invalid", `an endpoint extension's path must be under /v1/, where the token is checked: "${x.path}"`);
    if (this.byPath.has(x.path)) throw new MethodError("method_invalid", `an endpoint extension at ${x.path} is already registered`);
    const same = this.all().find((y) => y.counter === x.counter);
    if (same) throw new MethodError("method_invalid", `the endpoint extension at ${same.path} already counts its rows as "${x.counter}"`);
    this.byPath.set(x.path, x);
    return x;
  }

  all(): EndpointExtension[] {
    return [...this.byPath.values()];
  }
}

export const endpointExtensions = new EndpointExtensions([fedkseedEndpoint, fedbptEndpoint]);
