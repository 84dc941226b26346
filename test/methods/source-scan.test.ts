// Nothing outside a method's folder branches on its name (docs/ARCHITECTURE.md, "Adding a method"): the
// aggregator, the client trainer, the run command and the endpoint read the registries. This scans every
// source file's value-level string literals (TypeScript's parser; a literal type such as Pick<O, "lora">
// names an engine option, not a method) for a registered method's name.
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { clientMethods } from "../../src/fl/methods/client.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";

const METHODS = new Set([...serverMethods.types(), ...clientMethods.types()]);
/** Production code: no method name at all. bench/ holds configs as data, so there only a comparison counts. */
const CODE = ["src", "workers", "durable-objects", "cli", "scripts", "bin"];
const FOLDER = "src/fl/methods/";

function literals(file: string): { text: string; line: number; compared: boolean }[] {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
  const out: { text: string; line: number; compared: boolean }[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) && !ts.isLiteralTypeNode(node.parent)) {
      const p = node.parent;
      const compared =
        (ts.isBinaryExpression(p) &&
          [ts.SyntaxKind.EqualsEqualsEqualsToken, ts.SyntaxKind.ExclamationEqualsEqualsToken, ts.SyntaxKind.EqualsEqualsToken].includes(
            p.operatorToken.kind,
          )) ||
        ts.isCaseClause(p);
      out.push({ text: node.text, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1, compared });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

const files = execFileSync("git", ["ls-files", "*.ts", "*.js"], { encoding: "utf8" }).trim().split("\n");

describe("the method seam", () => {
  it("registers the five built-in methods on both sides", () => {
    expect([...METHODS].sort()).toEqual(["discrete", "fedbpt", "fedkseed", "lora", "offsite"]);
  });

  it("finds the literals it scans for (the scan would see a branch)", () => {
    const here = literals("test/methods/source-scan.test.ts").filter((l) => METHODS.has(l.text));
    expect(here.length).toBeGreaterThanOrEqual(5);
  });

  it("has no method name outside src/fl/methods/ in code, and no comparison with one in bench/", () => {
    const found: string[] = [];
    for (const file of files) {
      if (file.startsWith(FOLDER)) continue;
      const top = file.split("/")[0]!;
      const code = CODE.includes(top);
      if (!code && top !== "bench") continue;
      for (const l of literals(file)) if (METHODS.has(l.text) && (code || l.compared)) found.push(`${file}:${l.line} "${l.text}"`);
    }
    expect(found).toEqual([]);
  });
});
