// A client worker's methods: the built-in client sides. A deployment adds its own with clientMethods.add
// in its worker's entry (docs/ARCHITECTURE.md, "Adding a method").
import { discreteClient } from "./discrete/client.ts";
import { fedbptClient } from "./fedbpt/client.ts";
import { fedkseedClient } from "./fedkseed/client.ts";
import { loraClient } from "./lora/client.ts";
import type { ClientMethod, MethodConfig } from "./method.ts";
import { offsiteClient } from "./offsite/client.ts";
import { MethodRegistry } from "./registry.ts";

export const clientMethods = new MethodRegistry<ClientMethod<MethodConfig>>("client side", [
  loraClient,
  offsiteClient,
  fedkseedClient,
  fedbptClient,
  discreteClient,
] as ClientMethod<never>[] as ClientMethod<MethodConfig>[]);
