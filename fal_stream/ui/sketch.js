// Live sketchpad. This file is the body of gr.HTML's js_on_load: Gradio runs it
// once per mount with `element`, `props` and `watch` in scope. Every piece of
// state lives in this closure, so a re-rendered component starts clean and two
// mounts never share anything.
//
// Sending a frame is `props.value = dataUrl`. Gradio's HTML wrapper compares the
// new value with the old one and dispatches `change` itself, so calling
// trigger('change') as well would run the Python handler twice per frame.

const SIZE = Number(props.size) || 512;
const INTERVAL_MS = Number(props.interval_ms) || 66;
const QUALITY = Number(props.quality) || 0.8;
const UNDO_DEPTH = 20;
const PAPER = "#ffffff";
const NOT_A_PICTURE = "That file is not a picture; choose a PNG, JPEG, WebP or GIF.";

const canvas = element.querySelector(".fs-canvas");
const ctx = canvas.getContext("2d");
const sizeInput = element.querySelector(".fs-size");
const sizeValue = element.querySelector(".fs-size-value");
const colorInput = element.querySelector(".fs-color");
const eraserButton = element.querySelector(".fs-eraser");
const undoButton = element.querySelector(".fs-undo");
const clearButton = element.querySelector(".fs-clear");
const uploadButton = element.querySelector(".fs-upload");
const fileInput = element.querySelector(".fs-file");
const message = element.querySelector(".fs-message");
const swatches = Array.from(element.querySelectorAll(".fs-swatch"));

const state = {
  pointerId: null,
  last: null, // last pointer position, in canvas pixels
  mid: null, // midpoint the next curve segment starts from
  dirty: false, // the canvas differs from the last frame sent
  lastSentAt: -Infinity,
  lastValue: typeof props.value === "string" ? props.value : "",
  timer: null,
  history: [],
  erasing: false,
  color: colorInput.value,
  width: Number(sizeInput.value),
};

function fillPaper() {
  ctx.save();
  ctx.globalCompositeOperation = "source-over";
  ctx.fillStyle = PAPER;
  ctx.fillRect(0, 0, SIZE, SIZE);
  ctx.restore();
}

function say(text) {
  message.textContent = text;
  message.hidden = !text;
}

// ---- sending -------------------------------------------------------------

function send() {
  clearTimeout(state.timer);
  state.timer = null;
  if (!state.dirty) return;
  state.dirty = false;
  state.lastSentAt = performance.now();
  state.lastValue = canvas.toDataURL("image/jpeg", QUALITY);
  props.value = state.lastValue;
}

// At most one frame per INTERVAL_MS while drawing; the timer also sends the
// tail of a stroke when the pen stops moving without lifting.
function scheduleSend() {
  state.dirty = true;
  if (state.timer !== null) return;
  const wait = Math.max(0, state.lastSentAt + INTERVAL_MS - performance.now());
  state.timer = setTimeout(send, wait);
}

function sendNow() {
  state.dirty = true;
  send();
}

// ---- undo ----------------------------------------------------------------

function remember() {
  state.history.push(ctx.getImageData(0, 0, SIZE, SIZE));
  if (state.history.length > UNDO_DEPTH) state.history.shift();
  undoButton.disabled = false;
}

function undo() {
  if (state.pointerId !== null || state.history.length === 0) return;
  ctx.putImageData(state.history.pop(), 0, 0);
  undoButton.disabled = state.history.length === 0;
  sendNow();
}

// ---- drawing -------------------------------------------------------------

function toCanvas(ev) {
  const box = canvas.getBoundingClientRect();
  return {
    x: ((ev.clientX - box.left) * SIZE) / box.width,
    y: ((ev.clientY - box.top) * SIZE) / box.height,
  };
}

function setPen() {
  const ink = state.erasing ? PAPER : state.color;
  ctx.strokeStyle = ink;
  ctx.fillStyle = ink;
  ctx.lineWidth = state.width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
}

// Curves run from midpoint to midpoint with the sampled point as control, which
// smooths the corners between pointer samples without lagging behind the pen.
function extendTo(p) {
  const m = { x: (state.last.x + p.x) / 2, y: (state.last.y + p.y) / 2 };
  ctx.beginPath();
  ctx.moveTo(state.mid.x, state.mid.y);
  ctx.quadraticCurveTo(state.last.x, state.last.y, m.x, m.y);
  ctx.stroke();
  state.last = p;
  state.mid = m;
}

function endStroke(ev) {
  if (state.pointerId === null || ev.pointerId !== state.pointerId) return;
  ctx.beginPath();
  ctx.moveTo(state.mid.x, state.mid.y);
  ctx.lineTo(state.last.x, state.last.y);
  ctx.stroke();
  if (canvas.hasPointerCapture(ev.pointerId)) canvas.releasePointerCapture(ev.pointerId);
  state.pointerId = null;
  sendNow();
}

canvas.addEventListener("pointerdown", (ev) => {
  if (state.pointerId !== null || (ev.pointerType === "mouse" && ev.button !== 0)) return;
  ev.preventDefault();
  canvas.setPointerCapture(ev.pointerId);
  canvas.focus({ preventScroll: true, focusVisible: false });
  remember();
  setPen();
  state.pointerId = ev.pointerId;
  state.last = toCanvas(ev);
  state.mid = state.last;
  ctx.beginPath();
  ctx.arc(state.last.x, state.last.y, state.width / 2, 0, 2 * Math.PI);
  ctx.fill();
  scheduleSend();
});

canvas.addEventListener("pointermove", (ev) => {
  if (ev.pointerId !== state.pointerId) return;
  // Coalesced events keep fast pen strokes smooth at display refresh rates.
  const samples = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [];
  for (const sample of samples.length ? samples : [ev]) extendTo(toCanvas(sample));
  scheduleSend();
});

canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
canvas.addEventListener("lostpointercapture", endStroke);

// ---- toolbar -------------------------------------------------------------

function pickColor(color) {
  state.color = color;
  state.erasing = false;
  colorInput.value = color;
  eraserButton.setAttribute("aria-pressed", "false");
  for (const swatch of swatches) {
    swatch.setAttribute("aria-pressed", String(swatch.dataset.color === color));
  }
}

sizeInput.addEventListener("input", () => {
  state.width = Number(sizeInput.value);
  sizeValue.textContent = sizeInput.value;
});
colorInput.addEventListener("input", () => pickColor(colorInput.value));
for (const swatch of swatches) {
  swatch.style.backgroundColor = swatch.dataset.color;
  swatch.addEventListener("click", () => pickColor(swatch.dataset.color));
}
eraserButton.addEventListener("click", () => {
  state.erasing = !state.erasing;
  eraserButton.setAttribute("aria-pressed", String(state.erasing));
});
undoButton.addEventListener("click", undo);
clearButton.addEventListener("click", () => {
  remember();
  fillPaper();
  say("");
  sendNow();
});

// Ctrl/Cmd+Z only while focus is inside the sketch, so that undo in the
// page's text boxes keeps working as usual.
element.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && !ev.shiftKey && ev.key.toLowerCase() === "z") {
    ev.preventDefault();
    undo();
  }
});

// ---- pictures ------------------------------------------------------------

// Cover the square: scale to fill, centre, crop the overflow.
function drawCover(picture, width, height) {
  const scale = Math.max(SIZE / width, SIZE / height);
  const w = width * scale;
  const h = height * scale;
  fillPaper();
  ctx.drawImage(picture, (SIZE - w) / 2, (SIZE - h) / 2, w, h);
}

uploadButton.addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", async () => {
  const file = fileInput.files && fileInput.files[0];
  fileInput.value = "";
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    say(NOT_A_PICTURE);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (err) {
    say(NOT_A_PICTURE);
    return;
  }
  remember();
  drawCover(bitmap, bitmap.width, bitmap.height);
  bitmap.close();
  say("");
  sendNow();
});

// A value set from Python (say, an example sketch) is drawn onto the paper and
// "" clears it. Our own sends do not come back through here.
watch("value", () => {
  const value = typeof props.value === "string" ? props.value : "";
  if (value === state.lastValue) return;
  state.lastValue = value;
  if (!value) {
    remember();
    fillPaper();
    return;
  }
  if (!value.startsWith("data:image/")) return;
  const picture = new Image();
  // Send our own rendition at once, so that every frame after an example is
  // a size x size JPEG like the rest.
  picture.onload = () => {
    remember();
    drawCover(picture, picture.naturalWidth, picture.naturalHeight);
    sendNow();
  };
  picture.src = value;
});

fillPaper();
pickColor(state.color);
undoButton.disabled = true;
say("");
// Tests and page scripts wait for this before they draw.
element.querySelector(".fs-sketch").dataset.ready = "true";
