// Drives fal's official JavaScript client (@fal-ai/client) against fal_stream:
// the realtime token comes from fal_stream's proxy route or its token route, and
// the socket goes to fal_stream's built-in backend.
//
// Usage: node realtime.mjs <settings JSON>, with the settings
//   {"mode": "proxy" | "tokenProvider", "server": "http://127.0.0.1:P",
//    "runHost": "ws://127.0.0.1:Q", "app": "owner/alias/...", "image": "<path>",
//    "frames": 3, "secret": "" }
// Prints one JSON line: {"results": [...], "errors": [...], "tokens": n}.

import { readFileSync } from "node:fs";

import { fal } from "@fal-ai/client";
import { WebSocket as NodeWebSocket } from "ws";

const settings = JSON.parse(process.argv[2]);
const frames = settings.frames ?? 3;
const secretHeaders = settings.secret
  ? { "x-fal-stream-secret": settings.secret }
  : {};

// The client opens `new WebSocket("wss://fal.run/...")` with the global class
// (realtime.js). Node 20 has none, so this one sends that URL to the backend.
class RedirectedWebSocket extends NodeWebSocket {
  constructor(url, protocols) {
    const target = String(url).replace(/^wss:\/\/fal\.run\//, `${settings.runHost}/`);
    if (target === String(url)) {
      throw new Error(`unexpected socket URL ${String(url).split("?")[0]}`);
    }
    super(target, protocols);
    this.binaryType = "arraybuffer";
  }
}
globalThis.WebSocket = RedirectedWebSocket;

let tokens = 0;

// Both modes: the page holds no key (FAL_KEY is unset for this process).
if (settings.mode === "proxy") {
  fal.config({
    // The object form with when: "always" proxies outside browsers too (1.10.0+).
    proxyUrl: { url: `${settings.server}/api/fal/proxy`, when: "always" },
    requestMiddleware: async (request) => {
      tokens += 1;
      return { ...request, headers: { ...(request.headers ?? {}), ...secretHeaders } };
    },
  });
}

async function tokenProvider(app) {
  tokens += 1;
  const response = await fetch(`${settings.server}/api/fal/realtime-token`, {
    method: "POST",
    headers: { "content-type": "application/json", ...secretHeaders },
    body: JSON.stringify({ app }),
  });
  if (!response.ok) {
    // The client drops a failed mint silently (no onError), so report it here.
    const problem = `token route answered ${response.status}: ${await response.text()}`;
    errors.push(problem);
    onNext();
    throw new Error(problem);
  }
  return response.text();
}

const image = new Uint8Array(readFileSync(settings.image));
const results = [];
const errors = [];
let onNext = () => {};

const connection = fal.realtime.connect(settings.app, {
  connectionKey: `fal-stream-${settings.mode}`,
  throttleInterval: 0,
  ...(settings.mode === "tokenProvider"
    ? { tokenProvider, tokenExpirationSeconds: 120 }
    : {}),
  onResult: (result) => {
    const content = result?.images?.[0]?.content;
    results.push({
      seed: result.seed ?? null,
      bytes: content ? content.byteLength : 0,
      width: result?.images?.[0]?.width ?? null,
    });
    onNext();
  },
  onError: (error) => {
    errors.push(`${error.status ?? ""} ${error.message}`);
    onNext();
  },
});

function nextEvent(timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no result in time")), timeoutMs);
    onNext = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

let exitCode = 0;
try {
  // One frame at a time: while connecting the client keeps only the newest.
  for (let n = 0; n < frames; n += 1) {
    const waiting = nextEvent(20_000);
    connection.send({ prompt: "a red barn", image_bytes: image, seed: 100 + n });
    await waiting;
    if (errors.length) break;
  }
} catch (error) {
  errors.push(String(error));
  exitCode = 1;
} finally {
  connection.close();
}
console.log(JSON.stringify({ results, errors, tokens }));
process.exit(exitCode);
