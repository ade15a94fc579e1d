// fal's JavaScript client, with its token minted by fal_stream's server.
//
// Query parameters (all optional):
//   server   fal_stream's address            (default http://127.0.0.1:7860)
//   mode     "token": tokenProvider calling /api/fal/realtime-token (default)
//            "proxy": proxyUrl /api/fal/proxy, fal's older proxy contract
//   app      the realtime app id             (default fal-ai/fast-lcm-diffusion/image-to-image)
//   runHost  socket base of fal_stream's built-in backend, such as
//            ws://127.0.0.1:8701; only when the server runs without FAL_KEY
import { fal } from "@fal-ai/client";

const params = new URLSearchParams(location.search);
const server = (params.get("server") ?? "http://127.0.0.1:7860").replace(/\/+$/, "");
const mode = params.get("mode") === "proxy" ? "proxy" : "token";
const app = params.get("app") ?? "fal-ai/fast-lcm-diffusion/image-to-image";
const runHost = params.get("runHost");

const canvas = document.getElementById("sketch");
const output = document.getElementById("output");
const prompt = document.getElementById("prompt");
const status = document.getElementById("status");
const pen = canvas.getContext("2d");

function setStatus(text) {
  status.textContent = text;
}

if (runHost) {
  // fal's client always opens wss://fal.run/...; the built-in backend listens
  // elsewhere, so its sockets are sent there instead.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(url, protocols) {
      const base = runHost.replace(/\/+$/, "");
      super(String(url).replace(/^wss:\/\/fal\.run\//, `${base}/`), protocols);
    }
  };
}

if (mode === "proxy") {
  fal.config({ proxyUrl: `${server}/api/fal/proxy` });
}

async function tokenProvider(appWithPath) {
  const response = await fetch(`${server}/api/fal/realtime-token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ app: appWithPath }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const problem = `no token (HTTP ${response.status}): ${body.detail ?? ""}`;
    setStatus(problem);
    throw new Error(problem);
  }
  return response.text();
}

const connection = fal.realtime.connect(app, {
  connectionKey: "fal-stream-example",
  throttleInterval: 128,
  ...(mode === "token" ? { tokenProvider, tokenExpirationSeconds: 120 } : {}),
  onResult(result) {
    const image = result?.images?.[0];
    if (!image?.content) return;
    const url = URL.createObjectURL(
      new Blob([image.content], { type: image.content_type ?? "image/jpeg" }),
    );
    output.onload = () => URL.revokeObjectURL(url);
    output.src = url;
    setStatus(`result for seed ${result.seed ?? "?"} (${mode} mode)`);
  },
  onError(error) {
    setStatus(`error: ${error.message}`);
  },
});

let pending = false;

// At most one encode per animation frame; the client keeps only the newest.
function sendSoon() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    canvas.toBlob(
      async (blob) => {
        pending = false;
        if (!blob) return;
        connection.send({
          prompt: prompt.value,
          image_bytes: new Uint8Array(await blob.arrayBuffer()),
          strength: 0.6,
          num_inference_steps: 4,
          seed: 42,
        });
      },
      "image/jpeg",
      0.8,
    );
  });
}

function clear() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, canvas.width, canvas.height);
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * canvas.width) / box.width,
    ((event.clientY - box.top) * canvas.height) / box.height,
  ];
}

let drawing = false;
canvas.addEventListener("pointerdown", (event) => {
  drawing = true;
  canvas.setPointerCapture(event.pointerId);
  pen.beginPath();
  pen.moveTo(...point(event));
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineTo(...point(event));
  pen.strokeStyle = "#234";
  pen.lineWidth = 8;
  pen.lineCap = "round";
  pen.stroke();
  sendSoon();
});
canvas.addEventListener("pointerup", () => {
  drawing = false;
  sendSoon();
});
prompt.addEventListener("input", sendSoon);
document.getElementById("clear").addEventListener("click", () => {
  clear();
  sendSoon();
});

clear();
window.addEventListener("beforeunload", () => connection.close());
