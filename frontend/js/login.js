// Login page: POST /api/auth/login sets the HttpOnly session cookie; the token in the body is
// not kept. A locked account shows when it unlocks (error.details.unlock_at, local time).

import * as api from "./api.js";
import { toDate } from "./dom.js";
import { bindThemeSelect } from "./theme.js";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const submit = document.getElementById("login-submit");
let unlockTimer = null;

function showMessage(text) {
  errorBox.hidden = !text;
  errorBox.textContent = text || "";
}

function lockedMessage(details) {
  const until = toDate(details && details.unlock_at);
  if (!until) return "This account is locked after too many failed attempts. Try again later.";
  const time = until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const mins = Math.max(0, Math.ceil((until.getTime() - Date.now()) / 60000));
  return `This account is locked after too many failed attempts. It unlocks at ${time}` +
    ` (in about ${mins} minute${mins === 1 ? "" : "s"}).`;
}

/** Where to go after login: only our own tabs (never an arbitrary URL from the query). */
function nextLocation() {
  const next = new URLSearchParams(location.search).get("next") || "";
  // A tab, optionally with the one thing it shows (#operations/OP-10001, #links/vm-web-01);
  // nothing else, so `next` cannot become an open redirect.
  return /^#(overview|links|operations|terminal|recordings)(\/[A-Za-z0-9._~%-]{1,200})?$/.test(next) ? `./${next}` : "./";
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showMessage("Enter your username and password.");
    return;
  }
  submit.disabled = true;
  showMessage("");
  try {
    await api.login(username, password);
    location.replace(nextLocation());
  } catch (err) {
    clearTimeout(unlockTimer);
    if (err.code === "ACCOUNT_LOCKED") {
      showMessage(lockedMessage(err.details));
      const until = toDate(err.details && err.details.unlock_at);
      if (until) {
        // Clear the lock message once the time has passed so the user knows to retry.
        unlockTimer = setTimeout(() => showMessage("The lock has expired: you can try again."),
          Math.max(0, until.getTime() - Date.now()) + 500);
      }
    } else if (err.code === "INVALID_CREDENTIALS" || err.status === 401) {
      showMessage("Wrong username or password.");
    } else {
      showMessage(`Login failed: ${err.message}${err.code ? ` (${err.code})` : ""}`);
    }
    form.password.select();
  } finally {
    submit.disabled = false;
  }
});

bindThemeSelect(document.getElementById("theme-select"));

// No "already signed in?" probe here: its expected 401 would be logged as a console error.
// The app itself sends a signed-out visitor to this page.
