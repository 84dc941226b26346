// A client worker's entry with the toy method registered: the project's client worker as it is.
import { clientMethods } from "../../../../src/fl/methods/client.ts";
import { toyClient } from "../method.ts";

clientMethods.add(toyClient);

export { ClientTrainer } from "../../../../workers/client/trainer.ts";
export { default } from "../../../../workers/client/index.ts";
