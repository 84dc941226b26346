#!/usr/bin/env node
// Node 22.18 or newer runs the TypeScript sources directly (type stripping, on by default there and from 23.6);
// an older Node cannot even load them, so it is told so here, before the import that would fail with
// ERR_UNKNOWN_FILE_EXTENSION.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 18) || (major === 23 && minor < 6)) {
  console.error(
    `fedflare needs Node 22.18 or newer (this is ${process.versions.node}): run it as \`npx fedflare\` or \`npm start\` in ` +
      "the project, which use the Node npm installed there, or install Node 22.",
  );
  process.exit(1);
}
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
