#!/usr/bin/env node
// Node >= 22.18 runs the TypeScript sources directly (type stripping).
import { main } from "../cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
