// Reactions widget: <reaction-bar article="ID" [reader="URL"] [ingest="URL"]></reaction-bar>
// No dependencies and no build step. Reader and ingest base URLs default to the script
// tag's data-reader / data-ingest, else to the origin this script was loaded from.
(() => {
  "use strict";
  if (!window.customElements || customElements.get("reaction-bar")) return;

  const script = document.currentScript;
  const own = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  const DEFAULT_READER = (script && script.dataset.reader) || own;
  const DEFAULT_INGEST = (script && script.dataset.ingest) || own;
  const ARTICLE = /^[A-Za-z0-9._:~-]{1,128}$/;
  const USER = /^[A-Za-z0-9._~-]{1,64}$/;
  const STORAGE_KEY = "reactions.reader-id";
  const BULK_MAX = 100;
  const number = new Intl.NumberFormat(undefined, { notation: "compact" });

  let readerId = null;
  // The anonymous reader id, kept in localStorage (in memory only if storage is blocked).
  const userId = () => {
    if (readerId) return readerId;
    try {
      readerId = localStorage.getItem(STORAGE_KEY);
    } catch (e) {}
    if (!readerId || !USER.test(readerId)) {
      readerId = crypto.randomUUID
        ? crypto.randomUUID()
        : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
      try {
        localStorage.setItem(STORAGE_KEY, readerId);
      } catch (e) {}
    }
    return readerId;
  };

  const json = (r) => {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  };

  // Per reader service: its reaction config (fetched once) and the queue of tallies to
  // load. Bars connected in the same tick are loaded with one bulk request per 100.
  const services = new Map();
  const service = (url) => {
    let s = services.get(url);
    if (!s) {
      s = { config: fetch(url + "/v1/config").then(json).then((c) => c.reactions), queue: new Map() };
      services.set(url, s);
    }
    return s;
  };
  const loadTally = (url, article) =>
    new Promise((resolve, reject) => {
      const s = service(url);
      if (!s.queue.size) setTimeout(() => flush(url, s), 0);
      if (!s.queue.has(article)) s.queue.set(article, []);
      s.queue.get(article).push({ resolve, reject });
    });
  const flush = (url, s) => {
    const queue = s.queue;
    s.queue = new Map();
    const ids = [...queue.keys()];
    for (let i = 0; i < ids.length; i += BULK_MAX) {
      const chunk = ids.slice(i, i + BULK_MAX);
      fetch(`${url}/v1/reactions?ids=${chunk.map(encodeURIComponent).join(",")}&user_id=${userId()}`)
        .then(json)
        .then(
          (body) => chunk.forEach((a) => queue.get(a).forEach((w) => w.resolve(body.articles[a]))),
          (err) => chunk.forEach((a) => queue.get(a).forEach((w) => w.reject(err)))
        );
    }
  };

  // One EventSource per (reader, article) on the page, shared by its bars and closed
  // with the last of them.
  const streams = new Map();
  const listen = (bar) => {
    const key = bar.readerUrl + " " + bar.article;
    let s = streams.get(key);
    if (!s) {
      s = { bars: new Set(), source: null };
      const open = () => {
        s.source = new EventSource(`${bar.readerUrl}/v1/articles/${encodeURIComponent(bar.article)}/reactions/stream`);
        s.source.addEventListener("tally", (e) => {
          let tally;
          try {
            tally = JSON.parse(e.data);
          } catch (err) {
            return;
          }
          s.bars.forEach((b) => b.onTally(tally));
        });
        // The browser retries dropped streams itself, but gives up on an HTTP error.
        s.source.onerror = () => {
          if (s.source.readyState === EventSource.CLOSED && s.bars.size) {
            s.timer = setTimeout(open, 5000 + Math.random() * 10000);
          }
        };
      };
      open();
      streams.set(key, s);
    }
    s.bars.add(bar);
    return () => {
      s.bars.delete(bar);
      if (!s.bars.size) {
        clearTimeout(s.timer);
        s.source.close();
        streams.delete(key);
      }
    };
  };

  const CSS = `
:host{--rx-bg:#fff;--rx-fg:#1f2328;--rx-muted:#59636e;--rx-border:#d1d9e0;--rx-hover:#f3f5f7;
--rx-pressed-bg:#ddf4ff;--rx-pressed-border:#0969da;--rx-focus:#0969da;--rx-radius:999px;--rx-gap:.5rem;
--rx-font:inherit;display:block;min-height:2em;font:var(--rx-font);color:var(--rx-fg)}
@media (prefers-color-scheme:dark){:host{--rx-bg:#151b23;--rx-fg:#f0f6fc;--rx-muted:#9198a1;
--rx-border:#3d444d;--rx-hover:#212830;--rx-pressed-bg:#0c2d6b;--rx-pressed-border:#4493f8;--rx-focus:#4493f8}}
:host([hidden]){display:none}
.bar{display:flex;flex-wrap:wrap;gap:var(--rx-gap)}
button{display:inline-flex;align-items:center;gap:.35em;padding:.35em .8em;border:1px solid var(--rx-border);
border-radius:var(--rx-radius);background:var(--rx-bg);color:inherit;font:inherit;line-height:1.25;cursor:pointer}
button:hover{background:var(--rx-hover)}
button[aria-pressed=true]{background:var(--rx-pressed-bg);border-color:var(--rx-pressed-border);font-weight:600}
button:focus-visible{outline:3px solid var(--rx-focus);outline-offset:2px}
.e{font-family:"Apple Color Emoji","Segoe UI Emoji","Noto Color Emoji",sans-serif}
.n{color:var(--rx-muted);font-variant-numeric:tabular-nums}
button[aria-pressed=true] .n{color:inherit}
.msg{margin:.4em 0 0;font-size:.875em;color:var(--rx-muted)}
@media (prefers-reduced-motion:no-preference){button{transition:background .15s,border-color .15s}}`;

  class ReactionBar extends HTMLElement {
    static get observedAttributes() {
      return ["article", "reader", "ingest"];
    }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.token = null;
    }

    connectedCallback() {
      if (!this.token) this.start();
    }

    disconnectedCallback() {
      this.stop();
    }

    attributeChangedCallback() {
      if (this.token) {
        this.stop();
        this.start();
      }
    }

    start() {
      const token = (this.token = {});
      const article = this.getAttribute("article") || "";
      this.article = article;
      this.readerUrl = (this.getAttribute("reader") || DEFAULT_READER).replace(/\/+$/, "");
      this.ingestUrl = (this.getAttribute("ingest") || DEFAULT_INGEST).replace(/\/+$/, "");
      this.server = null; // counts of the last tally from the server
      this.base = null; // the reader's reaction those counts include
      this.confirmed = null; // the reader's reaction as ingest last accepted it
      this.desired = null; // the reader's reaction as shown
      this.inFlight = false;
      this.settling = false; // a change of the reader's is not yet reflected in `server`
      this.poke = null;
      this.buttons = null;
      if (!ARTICLE.test(article)) {
        this.shadowRoot.innerHTML = "";
        return;
      }
      // The bar's height is reserved while it loads, so the page does not jump.
      this.shadowRoot.innerHTML = `<style>${CSS}</style>`;
      const loaded = loadTally(this.readerUrl, article).then((tally) => {
        if (token !== this.token || !tally) return;
        if (!this.server) this.server = tally.counts;
        this.base = this.confirmed = this.desired = tally.mine || null;
      });
      Promise.all([service(this.readerUrl).config, loaded]).then(
        ([types]) => {
          if (token !== this.token) return;
          this.build(types);
          this.render();
        },
        () => {
          if (token !== this.token) return;
          this.shadowRoot.innerHTML = `<style>${CSS}</style><p class="msg" role="status">Reactions are unavailable right now.</p>`;
        }
      );
      this.unlisten = listen(this);
    }

    stop() {
      this.token = null;
      if (this.unlisten) this.unlisten();
      this.unlisten = null;
    }

    build(types) {
      const root = this.shadowRoot;
      root.innerHTML = `<style>${CSS}</style><div class="bar" role="group" aria-label="Reactions"></div><p class="msg" role="status" aria-live="polite"></p>`;
      const bar = root.querySelector(".bar");
      this.message = root.querySelector(".msg");
      this.buttons = new Map();
      for (const type of types) {
        const button = document.createElement("button");
        button.type = "button";
        button.setAttribute("part", "button");
        button.dataset.reaction = type.id;
        button.innerHTML = '<span class="e" aria-hidden="true"></span> <span class="l"></span> <span class="n"></span>';
        button.firstChild.textContent = type.emoji;
        button.querySelector(".l").textContent = type.label;
        button.addEventListener("click", () => this.choose(type.id));
        bar.append(button);
        this.buttons.set(type.id, button);
      }
    }

    // What is shown: the server's counts with the reader's vote moved from the one they
    // include to the one chosen (the optimistic update).
    render() {
      if (!this.buttons) return;
      const counts = Object.assign({}, this.server);
      if (this.base) counts[this.base] = Math.max(0, (counts[this.base] || 0) - 1);
      if (this.desired) counts[this.desired] = (counts[this.desired] || 0) + 1;
      for (const [id, button] of this.buttons) {
        button.setAttribute("aria-pressed", String(id === this.desired));
        button.querySelector(".n").textContent = number.format(counts[id] || 0);
      }
    }

    onTally(tally) {
      if (!tally || !tally.counts) return;
      this.server = tally.counts;
      // Until the reader's own change is settled, a tally may or may not include it:
      // keep showing the optimistic counts and check now instead.
      if (this.settling) {
        if (this.poke) this.poke();
        return;
      }
      this.render();
    }

    choose(id) {
      this.desired = this.desired === id ? null : id;
      this.settling = true;
      this.say("");
      this.render();
      this.send();
    }

    // One request at a time; clicks meanwhile only change what the next request sends.
    async send() {
      if (this.inFlight || this.desired === this.confirmed) return;
      const token = this.token;
      const target = this.desired;
      const url = `${this.ingestUrl}/v1/articles/${encodeURIComponent(this.article)}/reactions/${userId()}`;
      const init = target
        ? {
            method: "PUT",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ reaction: target, client_ts: Date.now() }),
          }
        : { method: "DELETE" };
      this.inFlight = true;
      let status = 0;
      try {
        status = (await fetch(url, init)).status;
      } catch (e) {}
      this.inFlight = false;
      if (token !== this.token) return;
      if (status === 202) {
        this.confirmed = target;
        if (this.desired !== target) this.send();
        else this.reconcile(token, target);
        return;
      }
      this.desired = this.confirmed;
      this.settling = false;
      this.render();
      this.say(
        status === 429
          ? "You're reacting very quickly. Please wait a moment and try again."
          : "Sorry, your reaction couldn't be saved. Please try again."
      );
    }

    // Live tallies do not say whether they include this reader's vote yet; the tally with
    // user_id does (counts and `mine` are read together). Poll it briefly after a change
    // until the vote is applied, then count the vote as part of the server's counts.
    async reconcile(token, target) {
      const url = `${this.readerUrl}/v1/articles/${encodeURIComponent(this.article)}/reactions?user_id=${userId()}`;
      for (let wait = 100; wait < 10000; wait *= 2) {
        const tally = await fetch(url).then(json, () => null).catch(() => null);
        if (token !== this.token || this.inFlight || this.desired !== target) return;
        if (tally && (tally.mine || null) === target) {
          this.server = tally.counts;
          break;
        }
        await new Promise((r) => {
          this.poke = r;
          setTimeout(r, wait);
        });
        this.poke = null;
      }
      if (token !== this.token || this.inFlight || this.desired !== target) return;
      this.base = target;
      this.settling = false;
      this.render();
    }

    say(text) {
      if (this.message) this.message.textContent = text;
    }
  }

  customElements.define("reaction-bar", ReactionBar);
})();
