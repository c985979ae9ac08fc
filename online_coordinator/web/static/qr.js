// Coldstation coordinator: the request as an animated QR on a canvas. Each module is a
// square of whole device pixels (the canvas is sized in device pixels, so a HiDPI screen
// is not blurred by scaling), with the quiet zone the server included. Frames come from
// /batches/LABEL/qr.json: base64 of each frame's modules, one bit each, row by row.
"use strict";

const qr = { frames: [], modules: 0, fps: 10, index: 0, timer: null, paused: false };

function bits(frame) {
  const bytes = Uint8Array.from(atob(frame), (c) => c.charCodeAt(0));
  return (i) => (bytes[i >> 3] >> (7 - (i & 7))) & 1;
}

function draw(canvas) {
  if (!qr.frames.length) return;
  const ratio = window.devicePixelRatio || 1;
  const panel = canvas.parentElement.getBoundingClientRect();
  const fullscreen = document.fullscreenElement === canvas;
  // in the page: as large as fits beside the controls and below the title, at most 720
  const below = window.innerHeight - Math.max(0, panel.top) - 16;
  const css = fullscreen
    ? Math.min(window.innerWidth, window.innerHeight)
    : Math.max(200, Math.min(panel.width * 0.6, below, 720));
  const module = Math.max(1, Math.floor((css * ratio) / qr.modules));
  const side = module * qr.modules;
  if (canvas.width !== side) {
    canvas.width = side;
    canvas.height = side;
    canvas.style.width = `${side / ratio}px`;
    canvas.style.height = `${side / ratio}px`;
  }
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, side, side);
  context.fillStyle = "#000";
  const dark = bits(qr.frames[qr.index]);
  for (let y = 0; y < qr.modules; y++) {
    for (let x = 0; x < qr.modules; x++) {
      if (dark(y * qr.modules + x)) context.fillRect(x * module, y * module, module, module);
    }
  }
  canvas.dataset.frame = String(qr.index);
}

function restart(canvas) {
  clearInterval(qr.timer);
  document.getElementById("qr-fps").textContent = String(qr.fps);
  if (qr.paused) return;
  qr.timer = setInterval(() => {
    qr.index = (qr.index + 1) % qr.frames.length;
    draw(canvas);
  }, 1000 / qr.fps);
}

async function load(panel, canvas) {
  const status = document.getElementById("qr-status");
  const query = new URLSearchParams({
    preset: document.getElementById("qr-preset").value,
    framing: document.getElementById("qr-framing").value,
  });
  const response = await fetch(`${panel.dataset.frames}?${query}`, { credentials: "same-origin" });
  const answer = await response.json();
  if (!response.ok) {
    status.textContent = answer.error || response.statusText;
    return;
  }
  Object.assign(qr, { frames: answer.frames, modules: answer.modules, fps: answer.fps, index: 0 });
  const fps = new URLSearchParams(location.search).get("fps");
  if (fps && Number(fps) > 0) qr.fps = Number(fps);
  status.textContent = `${answer.framing.toUpperCase()}, QR version ${answer.version}, ` +
    `${answer.parts} part(s), ` +
    `${answer.frames.length} frames in the loop`;
  canvas.dataset.frames = String(answer.frames.length);
  draw(canvas);
  restart(canvas);
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("qr-panel");
  if (!panel) return;
  const canvas = document.getElementById("qr");
  for (const id of ["qr-preset", "qr-framing"]) {
    document.getElementById(id).addEventListener("change", () => load(panel, canvas));
  }
  document.getElementById("qr-slower").addEventListener("click", () => {
    qr.fps = Math.max(1, qr.fps / 2);
    restart(canvas);
  });
  document.getElementById("qr-faster").addEventListener("click", () => {
    qr.fps = Math.min(30, qr.fps * 2);
    restart(canvas);
  });
  document.getElementById("qr-pause").addEventListener("click", (event) => {
    qr.paused = !qr.paused;
    event.target.textContent = qr.paused ? "play" : "pause";
    restart(canvas);
  });
  document.getElementById("qr-full").addEventListener("click", () => canvas.requestFullscreen());
  document.addEventListener("fullscreenchange", () => draw(canvas));
  window.addEventListener("resize", () => draw(canvas));
  load(panel, canvas);
});
