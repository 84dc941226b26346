// What a client retries (busy, down, unreachable) and what it does not (a refusal).
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { request, TransientError } from "../../../src/fl/client/transient.ts";

let url: string;
const server = createServer((req, res) => res.writeHead(Number(req.url!.slice(1))).end("answer"));
beforeAll(() =>
  new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve())).then(() => {
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }),
);
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe("request", () => {
  it("answers an ok response, and makes 429 and 5xx transient, 4xx final", async () => {
    expect((await request("ok", `${url}/200`)).status).toBe(200);
    for (const status of [429, 500, 503]) await expect(request("busy", `${url}/${status}`)).rejects.toBeInstanceOf(TransientError);
    const refused = request("refused", `${url}/400`);
    await expect(refused).rejects.toThrow(/^refused: 400 answer$/);
    await expect(refused).rejects.not.toBeInstanceOf(TransientError);
  });

  it("makes an unreachable server transient", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", () => resolve()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expect(request("down", `http://127.0.0.1:${port}/`)).rejects.toBeInstanceOf(TransientError);
  });
});
