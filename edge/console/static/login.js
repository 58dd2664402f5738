"use strict";
document.getElementById("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("error");
  err.textContent = "";
  const body = JSON.stringify({
    name: document.getElementById("name").value.trim(),
    password: document.getElementById("password").value,
  });
  const r = await fetch("/api/login", {
    method: "POST", body, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Portlane": "1" },
  });
  if (r.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.href = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  } else {
    const j = await r.json().catch(() => ({}));
    err.textContent = j.error || `sign-in failed (${r.status})`;
  }
});
