// Shared client-side cache of the inventory (links) and the script catalogue, so the Links,
// Operations and Terminal tabs agree on one list and do not each refetch it.

import * as api from "./api.js";

const listeners = new Set();
let linksPromise = null;
let scriptsPromise = null;
let linksCache = [];

export const store = {
  /** All links (normalised); refetched when `fresh` or after invalidate(). */
  async links(fresh = false) {
    if (fresh || !linksPromise) {
      linksPromise = api.links().then(
        (list) => {
          linksCache = list;
          for (const fn of listeners) fn(list);
          return list;
        },
        (err) => {
          linksPromise = null; // let the next caller retry
          throw err;
        },
      );
    }
    return linksPromise;
  },

  /** The last list fetched (possibly empty), without waiting. */
  cachedLinks() {
    return linksCache;
  },

  async scripts(fresh = false) {
    if (fresh || !scriptsPromise) {
      scriptsPromise = api.scripts().catch((err) => {
        scriptsPromise = null;
        throw err;
      });
    }
    return scriptsPromise;
  },

  /** Replace one link in the cache (after a verify) and tell the listeners. */
  updateLink(updated) {
    linksCache = linksCache.map((l) => (l.id === updated.id ? updated : l));
    linksPromise = Promise.resolve(linksCache);
    for (const fn of listeners) fn(linksCache);
  },

  /** After a Git sync: the next reader refetches both lists. */
  invalidate() {
    linksPromise = null;
    scriptsPromise = null;
    this.links().catch(() => {});
  },

  /** Call fn(links) whenever the list changes; returns an unsubscribe function. */
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};
