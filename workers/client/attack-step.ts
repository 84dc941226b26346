// A benchmark attacker's upload (the ATTACK binding, src/fl/attacks/): a model attack applied to the honest
// upload at once, or "a little is enough" once every colluder has pooled its honest upload (collusion.ts).
import * as v from "valibot";
import { hashSeed, seededUniform } from "../../src/engine/sampling.ts";
import { alieTensors, ClientAttack, poisonUpload } from "../../src/fl/attacks/model-poisoning.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { ClientEnv } from "./env.ts";

/** What the attacker uploads instead of `honest` for a round, or null while its colluders have not all pooled theirs. */
export async function attackedUpload(env: ClientEnv, federation: string, round: number, honest: Uint8Array): Promise<Uint8Array | null> {
  const attack = v.parse(ClientAttack, JSON.parse(env.ATTACK!));
  if (attack.type !== "alie") {
    return poisonUpload(attack, honest, seededUniform(hashSeed(`${env.CLIENT_ID}/${round}`)));
  }
  if (!env.COLLUSION) throw new Error('ATTACK "alie" needs the COLLUSION binding, where colluders pool their honest updates');
  const pooled = await env.COLLUSION.getByName(`${federation}/${round}`).offer(env.CLIENT_ID, honest, attack.colluders);
  if (!pooled) return null;
  const own = decodeTensorFile(honest, "the honest upload");
  const tensors = alieTensors(
    pooled.map((b, i) => decodeTensorFile(b, `colluder ${i}'s upload`).tensors),
    attack.z,
  );
  return encodeTensorFile(tensors, own.shapes, own.metadata);
}
