// One xterm.js terminal in a container: loading the vendored library, colours from the page
// theme, desktop-style copy/paste keys and fitting to the container as it resizes. Knows
// nothing about panes, workspaces or sockets (terminal.js wires those).

import { copyText, showError } from "./dom.js";

let lib = null; // {Terminal, FitAddon}

/** Import xterm.js and the fit addon once (lazily, so only the Terminal tab needs them). */
export async function loadXterm() {
  if (lib) return lib;
  const [{ Terminal }, { FitAddon }] = await Promise.all([
    import("../vendor/xterm/xterm.js"),
    import("../vendor/xterm/addon-fit.js"),
  ]);
  lib = { Terminal, FitAddon };
  return lib;
}

export const xtermLoaded = () => lib !== null;

/** Terminal colours from the page theme's CSS variables. */
export function xtermTheme() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    background: v("--term-bg", "#0c0f13"),
    foreground: v("--text", "#d7dde4"),
    cursor: v("--accent", "#7cc4ff"),
    selectionBackground: "rgba(120, 160, 220, 0.35)",
  };
}

/**
 * A terminal opened in `container`; `onData(str)` gets keystrokes, `onResize(cols, rows)` the
 * new size after every fit; fitting waits while `canFit()` says no (a replay is being drawn
 * at its recorded size); `onShortcut(keyboardEvent)` returning true takes a key away from the
 * terminal (the page's own shortcuts). Returns {term, fit(), dispose()}. Requires loadXterm().
 */
export function createTerminal(container, { onData, onResize, canFit = () => true, onShortcut = () => false }) {
  const term = new lib.Terminal({
    cursorBlink: true,
    fontFamily: '"JetBrains Mono", "DejaVu Sans Mono", "Liberation Mono", monospace',
    fontSize: 13,
    scrollback: 5000,
    theme: xtermTheme(),
  });
  const fitAddon = new lib.FitAddon();
  term.loadAddon(fitAddon);
  term.open(container);
  term.onData(onData);
  term.onResize(({ cols, rows }) => onResize(cols, rows));
  // Ctrl+Shift+C / Ctrl+Shift+V copy and paste like a desktop terminal (Ctrl+C stays SIGINT).
  term.attachCustomKeyEventHandler((ev) => {
    if (onShortcut(ev)) {
      ev.preventDefault();
      return false;
    }
    if (ev.type !== "keydown" || !ev.ctrlKey || !ev.shiftKey) return true;
    if (ev.code === "KeyC") {
      const sel = term.getSelection();
      if (sel) copyText(sel);
      return false;
    }
    if (ev.code === "KeyV" && navigator.clipboard && navigator.clipboard.readText) {
      navigator.clipboard.readText().then((t) => term.paste(t), (err) => showError(err, "Paste"));
      return false;
    }
    return true;
  });

  const fit = () => {
    // A hidden pane has no size; fitting it would shrink the PTY to nothing.
    if (!container.offsetWidth || !container.offsetHeight || !canFit()) return;
    try {
      fitAddon.fit();
    } catch {
      // fit() throws while the element is detached; the next resize retries.
    }
  };
  let queued = false;
  const observer = new ResizeObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fit();
    });
  });
  observer.observe(container);
  const onTheme = () => {
    term.options.theme = xtermTheme();
  };
  // Canvas-drawn: it cannot follow CSS variables, so theme.js announces changes.
  window.addEventListener("linkops:theme", onTheme);
  return {
    term,
    fit,
    dispose() {
      observer.disconnect();
      window.removeEventListener("linkops:theme", onTheme);
      term.dispose();
    },
  };
}
