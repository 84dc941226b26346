// onnxruntime-web inside workerd (docs/ARCHITECTURE.md, "Runtime facts").
// The `./wasm` export resolves to the bundle build, whose Emscripten glue is inside the module.
import * as ort from "onnxruntime-web/wasm";
// Imported as a compiled WebAssembly.Module by wrangler's and the vitest plugin's CompiledWasm rule:
// workerd refuses to compile WASM from bytes at run time, so the module must come precompiled.
import ortWasm from "onnxruntime-web/ort-wasm-simd-threaded.wasm";
import { ortRuntime, type Runtime } from "../../src/engine/runtime.ts";
import { WEB_SESSION } from "../../src/engine/runtimes/ort-web.ts";

// A stand-in for the .wasm bytes: with a `wasmBinary`, ORT neither fetches the file (there is no URL
// to fetch it from in a Worker) nor streams it; it hands these bytes to WebAssembly.instantiate.
// It is not WASM (that starts "\0asm"), so no real module passed to instantiate can be taken for it.
const MARKER = [0x66, 0x66, 0x6c, 0x72] as const; // "fflr"

function isMarker(source: unknown): boolean {
  if (!ArrayBuffer.isView(source) && !(source instanceof ArrayBuffer)) return false;
  // ORT copies wasmBinary before instantiating, so the marker is recognised by its bytes.
  const bytes = ArrayBuffer.isView(source) ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength) : new Uint8Array(source);
  return bytes.length === MARKER.length && MARKER.every((b, i) => bytes[i] === b);
}

let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  // A Worker has no threads to spawn (numThreads 1) and no Web Worker to proxy to (proxy false).
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmBinary = new Uint8Array(MARKER);
  // Swap the marker for the precompiled module; every other call goes to the platform as before.
  const instantiate = WebAssembly.instantiate.bind(WebAssembly) as (source: unknown, imports?: WebAssembly.Imports) => Promise<unknown>;
  const patched = async (source: unknown, imports?: WebAssembly.Imports): Promise<unknown> => {
    if (!isMarker(source)) return instantiate(source, imports);
    heap = memoryOf(imports) ?? heap;
    return { module: ortWasm, instance: await instantiate(ortWasm, imports) };
  };
  WebAssembly.instantiate = patched as typeof WebAssembly.instantiate;
}

/** onnxruntime-web's WASM memory, which its glue creates and passes in as an import. */
let heap: WebAssembly.Memory | null = null;

function memoryOf(imports?: WebAssembly.Imports): WebAssembly.Memory | null {
  for (const ns of Object.values(imports ?? {}))
    for (const value of Object.values(ns)) if (value instanceof WebAssembly.Memory) return value;
  return null;
}

/**
 * The bytes of onnxruntime-web's WASM heap in this isolate, 0 before it starts: its peak, since WASM
 * memory never shrinks. Part of what the platform's 128 MB isolate limit counts, beside the JS heap.
 */
export function ortHeapBytes(): number {
  return heap?.buffer.byteLength ?? 0;
}

/** onnxruntime-web's WASM backend on one thread, as a Worker runs it (the session options are WEB_SESSION's). */
export function workerdOrtRuntime(): Runtime {
  install();
  return ortRuntime("ort-web", ort as never, WEB_SESSION, true);
}
