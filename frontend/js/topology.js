// Topology diagram of the inventory as nested HTML: each link sits under its parent, taken from
// metadata.parent, else ssh.proxyJump (VPS → Proxmox → VMs). Links whose parent is unknown or
// filtered out become roots, so nothing disappears; a cycle cannot hang the walk.

import { h, statusKind, typeIcon } from "./dom.js";

const TYPE_ORDER = { VPS: 0, Proxmox: 1, VM: 2 };

export function parentOf(link) {
  return link.metadata.parent || link.ssh.proxyJump || null;
}

/** Build {roots, children} from a list; pure, exported for tests and reuse. */
export function buildTree(links) {
  const byId = new Map(links.map((l) => [l.id, l]));
  const children = new Map();
  const roots = [];
  for (const l of links) {
    const p = parentOf(l);
    if (p && p !== l.id && byId.has(p)) {
      if (!children.has(p)) children.set(p, []);
      children.get(p).push(l);
    } else {
      roots.push(l);
    }
  }
  const order = (a, b) =>
    (TYPE_ORDER[a.type] ?? 9) - (TYPE_ORDER[b.type] ?? 9) || a.name.localeCompare(b.name);
  roots.sort(order);
  for (const list of children.values()) list.sort(order);
  return { roots, children };
}

/**
 * The diagram, top-down as in the mock-up: LinkOps at the top, the hosts it reaches directly
 * (VPS, Proxmox) below it, and under each host the links reached through it (the VMs behind
 * the Proxmox host). Drawn as nested lists; the connector lines are CSS borders.
 */
export function renderTopology(container, links, { onSelect }) {
  const { roots, children } = buildTree(links);
  const seen = new Set();

  const node = (l) => {
    seen.add(l.id);
    const kind = statusKind(l.status);
    const card = h(
      "button",
      {
        class: `topo-node topo-${kind}`,
        type: "button",
        title: `${l.name} (${l.id}) · ${l.type} · ${l.status} · ${l.enrolled ? "enrolled" : "not enrolled"} · ${l.ssh.user}@${l.ssh.host}:${l.ssh.port}`,
        "aria-label": `${l.name}, ${l.type}, ${l.status}, ${l.enrolled ? "enrolled" : "not enrolled"}: details`,
        dataset: { link: l.id },
      },
      h("span", { class: "topo-icon" }, typeIcon(l.type),
        h("span", { class: `topo-mark mark-${l.enrolled ? "ok" : "bad"}`, "aria-hidden": "true", text: l.enrolled ? "✓" : "✕" })),
      h("span", { class: "topo-name", text: l.name }),
      h("span", { class: "topo-meta" }, h("span", { class: `dot dot-${kind}` }), h("span", { text: l.type })),
    );
    card.addEventListener("click", () => onSelect(l));
    // Cycle guard: a link already drawn on this path is not expanded again.
    const kids = (children.get(l.id) || []).filter((k) => !seen.has(k.id));
    return h("li", {}, card, kids.length ? h("ul", {}, kids.map(node)) : null);
  };

  if (!links.length) {
    container.replaceChildren(h("p", { class: "empty", text: "No links match." }));
    return;
  }
  container.replaceChildren(
    h("div", { class: "topo-legend muted" },
      "SSH paths: LinkOps → hosts → what is reached through them (metadata.parent, else ssh.proxyJump). ✓ enrolled, ✕ not enrolled. Click a node for details."),
    h("div", { class: "topo-chart" },
      h("ul", { class: "topo-tree" },
        h("li", { class: "topo-top" },
          h("div", { class: "topo-origin" }, h("span", { class: "topo-origin-name", text: "LinkOps" })),
          h("ul", {}, roots.map(node))))),
  );
}
