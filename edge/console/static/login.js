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
    // Only ever back into the console: a "next" pointing elsewhere is ignored.
    const next = new URL(new URLSearchParams(location.search).get("next") || "/", location.origin);
    location.href = next.origin === location.origin ? next.pathname + next.search + next.hash : "/";
  } else {
    const j = await r.json().catch(() => ({}));
    err.textContent = j.error || `sign-in failed (${r.status})`;
  }
});
