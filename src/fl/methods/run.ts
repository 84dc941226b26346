// `fedflare run`'s methods: the built-in run sides. A method added elsewhere registers its own with
// runMethods.add before the run starts (docs/ARCHITECTURE.md, "Adding a method").
import { discreteRun } from "./discrete/run.ts";
import { fedbptRun } from "./fedbpt/run.ts";
import { fedkseedRun } from "./fedkseed/run.ts";
import { loraRun } from "./lora/run.ts";
import type { MethodConfig, RunMethod } from "./method.ts";
import { offsiteRun } from "./offsite/run.ts";
import { MethodRegistry } from "./registry.ts";

export const runMethods = new MethodRegistry<RunMethod<MethodConfig>>("run side", [
  loraRun,
  offsiteRun,
  fedkseedRun,
  fedbptRun,
  discreteRun,
] as RunMethod<never>[] as RunMethod<MethodConfig>[]);
