// Coldstation coordinator: scan the station's signed response with the laptop's camera.
// The page shows the live camera, posts a JPEG of the picture a few times a second, and
// shows what the coordinator made of it (parts known out of needed, about how many more).
// Decoding happens on the server (zxing-cpp), so every browser scans the same way.
"use strict";

async function scanLoop(panel, video, status) {
  const canvas = document.createElement("canvas");
  let done = false;
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, 120));
    if (!video.videoWidth) continue;
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    const response = await fetch(panel.dataset.scan, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "image/jpeg", "X-CSRF-Token": panel.dataset.csrf },
      body: frame,
    });
    const answer = await response.json();
    if (!response.ok) {
      status.className = "error";
      status.textContent = answer.error || response.statusText;
      done = true;
    } else if (answer.complete) {
      status.className = "ok";
      status.textContent = answer.message;
      done = true;
    } else {
      status.className = "";
      status.textContent = answer.needed
        ? `${answer.known} of ${answer.needed} parts known, about ${answer.left} more needed`
        : "looking for the station's QR code…";
    }
  }
  for (const track of video.srcObject.getTracks()) track.stop();
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("scan-panel");
  if (panel) {
    const video = document.getElementById("camera");
    const status = document.getElementById("scan-status");
    document.getElementById("scan-start").addEventListener("click", async (event) => {
      event.target.disabled = true;
      try {
        video.srcObject = await navigator.mediaDevices.getUserMedia({
          video: { facingMode: "environment", width: { ideal: 1280 } } });
        await scanLoop(panel, video, status);
      } catch (error) {
        status.className = "error";
        status.textContent = "camera: " + error.message;
        event.target.disabled = false;
      }
    });
  }
  const send = document.getElementById("broadcast");
  if (send) {
    send.addEventListener("click", async () => {
      const result = document.getElementById("result");
      send.disabled = true;
      const response = await fetch(send.dataset.submit, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": send.dataset.csrf },
        body: "{}",
      });
      const answer = await response.json();
      result.className = response.ok ? "ok" : "error";
      result.textContent = answer.message || answer.error;
      if (!response.ok) send.disabled = false;
    });
  }
});
