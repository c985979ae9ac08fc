// Coldstation coordinator: the browser's WebAuthn API, driven by the options the server
// made. Buttons carry data-webauthn ("create" or "get"), the CSRF token, and where to
// fetch options and post the credential (credential.toJSON(), base64url fields).
"use strict";

async function post(url, csrf, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body || {}),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function ceremony(button) {
  const result = document.getElementById("result");
  result.className = "";
  result.textContent = "waiting for your passkey…";
  button.disabled = true;
  try {
    const options = await post(button.dataset.options, button.dataset.csrf);
    const credential = button.dataset.webauthn === "create"
      ? await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    const done = await post(button.dataset.submit, button.dataset.csrf, credential.toJSON());
    if (done.enrolment) document.getElementById("enrolment").textContent = done.enrolment;
    result.className = "ok";
    result.textContent = done.message;
    const attested = document.getElementById("attested");
    if (attested && button.dataset.webauthn === "get") attested.textContent = "signed";
    if (done.next) window.location.assign(done.next);
  } catch (error) {
    result.className = "error";
    result.textContent = "failed: " + error.message;
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-webauthn]")) {
    button.addEventListener("click", () => ceremony(button));
  }
});
