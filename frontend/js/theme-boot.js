// Classic (non-module) script loaded in <head>: applies the remembered theme before the first
// paint so the page never flashes the default theme. The picker itself lives in theme.js.
(function () {
  var THEMES = ["gray-fabric", "blue-fabric", "charcoal-leather"];
  var saved = null;
  try {
    saved = window.localStorage.getItem("linkops.theme");
  } catch (e) {
    saved = null; // storage disabled: keep the default
  }
  document.documentElement.setAttribute(
    "data-theme", THEMES.indexOf(saved) >= 0 ? saved : "gray-fabric");
})();
