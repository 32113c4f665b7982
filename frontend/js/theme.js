// Theme picker: three textured themes, the choice remembered in localStorage.

export const THEMES = [
  { id: "gray-fabric", label: "Gray fabric" },
  { id: "blue-fabric", label: "Blue fabric" },
  { id: "charcoal-leather", label: "Charcoal leather" },
];
const KEY = "linkops.theme";

export function currentTheme() {
  return document.documentElement.getAttribute("data-theme") || THEMES[0].id;
}

export function applyTheme(id) {
  const theme = THEMES.find((t) => t.id === id) || THEMES[0];
  document.documentElement.setAttribute("data-theme", theme.id);
  try {
    localStorage.setItem(KEY, theme.id);
  } catch {
    // Private mode or storage disabled: the theme still applies for this page.
  }
  // Canvas-drawn parts (the terminals) cannot follow CSS variables by themselves.
  window.dispatchEvent(new CustomEvent("linkops:theme", { detail: theme.id }));
  return theme.id;
}

/** Fill a <select> with the themes and keep it in sync with the page. */
export function bindThemeSelect(select) {
  select.replaceChildren(
    ...THEMES.map((t) => {
      const opt = document.createElement("option");
      opt.value = t.id;
      opt.textContent = t.label;
      return opt;
    }),
  );
  select.value = currentTheme();
  select.addEventListener("change", () => {
    select.value = applyTheme(select.value);
  });
}
