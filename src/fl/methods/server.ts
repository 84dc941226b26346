// The aggregator's methods: the built-in server sides. A deployment adds its own with serverMethods.add
// in its worker's entry (docs/ARCHITECTURE.md, "Adding a method").
import { discreteServer } from "./discrete/server.ts";
import { fedbptServer } from "./fedbpt/server.ts";
import { fedkseedServer } from "./fedkseed/server.ts";
import { loraServer } from "./lora/server.ts";
import type { MethodConfig, ServerMethod } from "./method.ts";
import { offsiteServer } from "./offsite/server.ts";
import { MethodRegistry } from "./registry.ts";

export const serverMethods = new MethodRegistry<ServerMethod<MethodConfig>>("server side", [
  loraServer,
  offsiteServer,
  fedkseedServer,
  fedbptServer,
  discreteServer,
] as ServerMethod<never>[] as ServerMethod<MethodConfig>[]);
