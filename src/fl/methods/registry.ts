// Registries of the methods' sides, one per side so each deployment bundles only its own: the
// aggregator reads server sides, a client worker client sides, `fedflare run` run sides. A method
// outside this folder (a test's, a user's) is added with `add` in its worker's entry.
import * as v from "valibot";
import { firstIssue } from "../../errors.ts";
import { ConfigError, type FederationConfig, parseFederationConfig } from "../../protocol/federation.ts";
import { MethodError } from "./errors.ts";
import type { MethodConfig } from "./method.ts";

export class MethodRegistry<S extends { type: string; config: v.GenericSchema<unknown, MethodConfig> }> {
  private readonly byType = new Map<string, S>();
  private readonly side: string;

  constructor(side: string, sides: readonly S[]) {
    this.side = side;
    for (const s of sides) this.add(s);
  }

  add(side: S): S {
    if (this.byType.has(side.type))
      throw new MethodError("method_invalid", `a ${this.side} for method "${side.type}" is already registered`);
    this.byType.set(side.type, side);
    return side;
  }

  types(): string[] {
    return [...this.byType.keys()];
  }

  get(type: string): S {
    const side = this.byType.get(type);
    if (!side) throw new MethodError("method_unknown", `method "${type}" is not one of ${JSON.stringify(this.types())}`);
    return side;
  }

  /** The side of a method config, and the config validated by its schema (defaults filled in). */
  parse(json: unknown): { side: S; config: MethodConfig } {
    const type = typeof json === "object" && json !== null && "type" in json ? (json as { type: unknown }).type : undefined;
    if (typeof type !== "string")
      throw new MethodError("method_invalid", `field "method.type" must be one of ${JSON.stringify(this.types())}`);
    const side = this.byType.get(type);
    if (!side) throw new MethodError("method_invalid", `field "method.type": "${type}" is not one of ${JSON.stringify(this.types())}`);
    const r = v.safeParse(side.config, json);
    if (!r.success) throw new MethodError("method_invalid", firstIssue(r.issues, "", { schema: side.config, under: "method" }));
    return { side, config: r.output };
  }

  /**
   * A federation config with its method validated by that method's own schema (defaults filled in): the
   * one parse of a config, refused as ConfigError `config_invalid` naming the field.
   */
  parseFederation(json: unknown): { config: FederationConfig; side: S } {
    const config = parseFederationConfig(json);
    try {
      const { side, config: method } = this.parse(config.method);
      return { config: { ...config, method: method as FederationConfig["method"] }, side };
    } catch (e) {
      if (e instanceof MethodError) throw new ConfigError("config_invalid", `federation config: ${e.message}`, { cause: e });
      throw e;
    }
  }
}
