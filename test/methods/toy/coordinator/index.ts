// The coordinator's entry with the toy method registered: the project's coordinator and aggregator as they are.
import { serverMethods } from "../../../../src/fl/methods/server.ts";
import { toyServer } from "../method.ts";

serverMethods.add(toyServer);

export { Aggregator } from "../../../../durable-objects/aggregator/index.ts";
export { default } from "../../../../workers/coordinator/index.ts";
