// Reactions widget: <reaction-bar article="ID" [reader="URL"] [ingest="URL"]></reaction-bar>
// No dependencies and no build step. Reader and ingest base URLs default to the script
// tag's data-reader / data-ingest, else to the origin this script was loaded from.
// A site with its own login hands in its reader's token (README, "The widget"):
//   customElements.get("reaction-bar").setTokenProvider(async () => siteJwt or null)
(() => {
  "use strict";
  if (!window.customElements || customElements.get("reaction-bar")) return;

  const script = document.currentScript;
  const own = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  const DEFAULT_READER = (script && script.dataset.reader) || own;
  const DEFAULT_INGEST = (script && script.dataset.ingest) || own;
  const ARTICLE = /^[A-Za-z0-9._:~-]{1,128}$/;
  const TOKEN_KEY = "reactions.reader-token";
  const BULK_MAX = 100;
  const DAY = 864e5;
  const number = new Intl.NumberFormat(undefined, { notation: "compact" });

  // The id the widget kept before reader tokens names nobody now.
  try {
    localStorage.removeItem("reactions.reader-id");
  } catch (e) {}

  const failure = (status) => Object.assign(new Error("HTTP " + status), { status });
  const json = (r) => {
    if (!r.ok) throw failure(r.status);
    return r.json();
  };
  const bearer = (token) => ({ Authorization: "Bearer " + token });

  // The anonymous reader's token, written at the reader's first click and never on a page
  // view: in localStorage, shared by the site's tabs (in memory if storage is blocked).
  let memory = null;
  const heldToken = () => {
    let t = memory;
    try {
      t = JSON.parse(localStorage.getItem(TOKEN_KEY)) || memory;
    } catch (e) {}
    return t && typeof t.token == "string" && t.expires > Date.now() ? t : null;
  };
  const keep = (t) => {
    memory = t;
    try {
      if (t) localStorage.setItem(TOKEN_KEY, JSON.stringify(t));
      else localStorage.removeItem(TOKEN_KEY);
    } catch (e) {}
  };
  // Forget a token ingest refused (expired, revoked), unless another tab replaced it.
  const drop = (token) => {
    if ((heldToken() || {}).token === token) keep(null);
  };
  // Renewed when less than a tenth of its lifetime, at most 30 days, is left.
  const due = (t) => t.expires - Date.now() < Math.min((t.expires - t.issued) / 10, 30 * DAY);

  // POST /v1/readers. A new reader's request has no body and no header, so it is a simple
  // request (no CORS preflight); a renewal carries the token.
  const post = (ingest, token) =>
    fetch(ingest + "/v1/readers", { method: "POST", headers: token ? bearer(token) : {} }).catch(() => ({ status: 0 }));
  const issued = async (r) => {
    const body = await r.json();
    let life = 0;
    try {
      const claims = JSON.parse(atob(body.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      life = (claims.exp - claims.iat) * 1e3;
    } catch (e) {}
    // Kept as a lifetime from now, so a device's wrong clock does not matter.
    const now = Date.now();
    const t = { token: body.token, reader_id: body.reader_id, issued: now };
    t.expires = now + (life > 0 ? life : Date.parse(body.expires_at) - now);
    keep(t);
    return t;
  };
  // The held token, renewed when due (same reader id); with `mint`, a new reader if none.
  const obtain = async (ingest, mint) => {
    const held = heldToken();
    if (held && !due(held)) return held;
    if (held) {
      const r = await post(ingest, held.token);
      if (r.status === 201) return issued(r);
      if (r.status !== 401) return held; // still valid: renewal is tried again later
      drop(held.token);
    }
    if (!mint) return null;
    const r = await post(ingest);
    if (r.status !== 201) throw failure(r.status);
    return issued(r);
  };
  let provider = null;
  let tokens = Promise.resolve();
  // Whose token a request carries: the site's logged-in reader, else the anonymous reader
  // (minted only with `mint`, at a click); null for a reader who never clicked. Token
  // requests go one at a time, so bars clicked at once share one new reader.
  const credential = async (ingest, mint) => {
    const site = provider && (await provider());
    if (site) return { token: site, site: true };
    const next = () => obtain(ingest, mint);
    const t = await (tokens = tokens.then(next, next));
    return t && { token: t.token, site: false };
  };

  // Votes to an ingest wait until its first one is answered: that one's CORS preflight is
  // then cached for every vote after it (votes sent together would each send a preflight).
  const warm = new Map();
  const postVote = (url, init) => {
    const ready = warm.get(url);
    if (ready === true) return fetch(url, init);
    const response = (ready || Promise.resolve()).then(() => fetch(url, init));
    warm.set(url, response.then(() => warm.set(url, true), () => {}));
    return response;
  };

  // Per reader service: its reaction config (fetched once), its live streams (below) and the
  // bars waiting for their tallies. Bars connected in the same tick are loaded together: one
  // public bulk read per 100 articles, ids sorted and deduplicated so that pages with the
  // same bars share one cache entry, and for a reader holding a token one private read of
  // their own votes.
  const services = new Map();
  const service = (url) => {
    let s = services.get(url);
    if (!s) {
      s = { url, queue: new Map(), ids: [], streams: [], fails: 0, delay: 2e3 };
      s.config = fetch(url + "/v1/config").then(json).then((c) => c.reactions);
      services.set(url, s);
    }
    return s;
  };
  const loadTally = (bar) =>
    new Promise((resolve, reject) => {
      const s = service(bar.readerUrl);
      if (!s.queue.size) setTimeout(() => flush(bar.readerUrl, bar.ingestUrl, s), 0);
      if (!s.queue.has(bar.article)) s.queue.set(bar.article, []);
      s.queue.get(bar.article).push({ resolve, reject });
    });
  const query = (ids) => "?ids=" + ids.map(encodeURIComponent).join(",");
  const chunks = (ids) => {
    const c = [];
    for (let i = 0; i < ids.length; i += BULK_MAX) c.push(ids.slice(i, i + BULK_MAX));
    return c;
  };
  // Each bar gets [its public tally, its own-votes entry] — the entry is false for a reader
  // without a token, undefined if the private read failed.
  const flush = (url, ingest, s) => {
    const queue = s.queue;
    s.queue = new Map();
    const reader = credential(ingest, false);
    for (const chunk of chunks([...queue.keys()].sort())) {
      const q = query(chunk);
      const mine = reader
        .then(async (r) => {
          if (!r) return false;
          const response = await fetch(url + "/v1/me/reactions" + q, { headers: bearer(r.token) });
          if (response.status === 401 && !r.site) drop(r.token);
          return json(response);
        })
        .catch(() => undefined);
      Promise.all([fetch(url + "/v1/reactions" + q).then(json), mine]).then(
        ([pub, me]) =>
          chunk.forEach((a) => queue.get(a).forEach((w) => w.resolve([pub.articles[a], me && me.articles[a]]))),
        (err) => chunk.forEach((a) => queue.get(a).forEach((w) => w.reject(err)))
      );
    }
  };

  // Live counts: per reader service, one stream (`/v1/stream`, 100 articles each) for the
  // bars in or near the viewport, replaced when that set changes and closed while the page
  // is hidden. A connect sends every article's current tally, so a new stream is the resume.
  const bars = new Set();
  const near = new Set();
  const jitter = (ms) => ms * (0.8 + Math.random() * 0.4);
  const deliver = (s, article, tally) =>
    bars.forEach((b) => b.readerUrl === s.url && b.article === article && b.onTally(tally));
  const shut = (s) => {
    s.streams.forEach((st) => {
      clearTimeout(st.dog);
      st.es.close();
    });
    s.streams = [];
    clearTimeout(s.retry);
  };
  const open = (s) => {
    shut(s);
    for (const ids of chunks(s.ids)) {
      const st = { es: new EventSource(s.url + "/v1/stream" + query(ids)), got: false };
      // The server sends every tally at connect: a stream silent for 10 s (a buffering
      // proxy, a hung connect) has failed.
      const watch = () => (st.dog = setTimeout(() => st.got || fail(s), 1e4));
      st.es.addEventListener("tally", (e) => {
        let tally;
        try {
          tally = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        st.got = true;
        s.fails = 0;
        s.delay = 2e3;
        s.poll = false;
        clearTimeout(s.tick);
        deliver(s, tally.article_id, tally);
      });
      // After an event the browser reconnects by itself (the stream's lifetime ended); an
      // error before any (429, 503, a network error, an empty answer) is a failed attempt.
      st.es.onerror = () => {
        if (!st.got) return fail(s);
        st.got = false;
        clearTimeout(st.dog);
        watch();
      };
      watch();
      s.streams.push(st);
    }
  };
  // A failed stream is tried twice more (1 s, then 2 s later); then the public bulk read is
  // polled with backoff (2 s doubling to 60 s, jittered), each poll trying a stream again.
  const fail = (s) => {
    shut(s);
    if (++s.fails < 3) s.retry = setTimeout(() => open(s), jitter(1e3 * s.fails));
    else if (!s.poll) {
      s.poll = true;
      s.tick = setTimeout(() => poll(s), jitter(s.delay));
    }
  };
  const poll = (s) => {
    for (const ids of chunks(s.ids)) {
      // Revalidated, not taken from the browser's cache, which would serve a stale body
      // (stale-while-revalidate): the edge still answers it.
      fetch(s.url + "/v1/reactions" + query(ids), { cache: "no-cache" })
        .then(json)
        .then((body) => ids.forEach((a) => deliver(s, a, body.articles[a])), () => {});
    }
    open(s);
    s.delay = Math.min(s.delay * 2, 6e4);
    s.tick = setTimeout(() => poll(s), jitter(s.delay));
  };
  // Only when the set really changed: scrolling back and forth opens nothing.
  const sync = (s) => {
    const ids =
      document.visibilityState === "hidden"
        ? []
        : [...new Set([...near].filter((b) => b.readerUrl === s.url).map((b) => b.article))].sort();
    if (ids.join() === s.ids.join()) return;
    s.ids = ids;
    shut(s);
    clearTimeout(s.tick);
    if (ids.length) (s.poll ? poll : open)(s);
  };
  const syncAll = () => services.forEach(sync);
  // Scrolling settles before the stream changes.
  let settle = 0;
  const later = () => {
    clearTimeout(settle);
    settle = setTimeout(syncAll, 400);
  };
  // One viewport above and below: a bar scrolled to gets live counts before it is seen.
  const seen = new IntersectionObserver(
    (entries) => {
      entries.forEach((e) => (e.isIntersecting ? near.add(e.target) : near.delete(e.target)));
      later();
    },
    { rootMargin: "100%" }
  );
  document.addEventListener("visibilitychange", syncAll);

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

    // A site's logged-in reader: `provider` resolves to the site's token for them, or to
    // null for a reader who is not logged in. The bars on the page read their votes again.
    static setTokenProvider(fn) {
      provider = fn;
      bars.forEach((bar) => bar.load());
    }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.run = null;
    }

    connectedCallback() {
      if (!this.run) this.start();
    }

    disconnectedCallback() {
      this.stop();
    }

    attributeChangedCallback() {
      if (this.run) {
        this.stop();
        this.start();
      }
    }

    start() {
      this.run = {};
      const article = this.getAttribute("article") || "";
      this.article = article;
      this.readerUrl = (this.getAttribute("reader") || DEFAULT_READER).replace(/\/+$/, "");
      this.ingestUrl = (this.getAttribute("ingest") || DEFAULT_INGEST).replace(/\/+$/, "");
      this.server = null; // the freshest tally from the server: the highest seq seen
      this.base = null; // the reader's reaction those counts include
      this.votes = []; // [seq, reaction] of the reader's accepted votes not in `server` yet
      this.confirmed = null; // the reader's reaction as ingest last accepted it
      this.desired = null; // the reader's reaction as shown
      this.inFlight = false;
      this.held = null; // a tally that came while a vote was in flight
      this.buttons = null;
      if (!ARTICLE.test(article)) {
        this.shadowRoot.innerHTML = "";
        return;
      }
      // The bar's height is reserved while it loads, so the page does not jump.
      this.shadowRoot.innerHTML = `<style>${CSS}</style>`;
      bars.add(this);
      this.load();
      seen.observe(this);
    }

    stop() {
      this.run = null;
      bars.delete(this);
      seen.unobserve(this);
      if (near.delete(this)) later();
    }

    // The public tally and the reader's own vote: at start, and when the site's reader changes.
    load() {
      const run = this.run;
      Promise.all([service(this.readerUrl).config, loadTally(this)]).then(
        ([types, [tally, mine]]) => {
          if (run !== this.run) return;
          if (!this.buttons) this.build(types);
          this.onTally(tally, mine === false ? null : undefined);
          if (mine) this.onTally(mine, mine.mine || null);
        },
        () => {
          if (run !== this.run || this.buttons) return;
          this.shadowRoot.innerHTML = `<style>${CSS}</style><p class="msg" role="status">Reactions are unavailable right now.</p>`;
        }
      );
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

    // What is shown: the freshest tally with the reader's vote moved from the reaction it
    // includes to the one chosen — the own delta of votes it does not include yet.
    render() {
      if (!this.buttons) return;
      const counts = Object.assign({}, this.server && this.server.counts);
      if (this.base) counts[this.base] = Math.max(0, (counts[this.base] || 0) - 1);
      if (this.desired) counts[this.desired] = (counts[this.desired] || 0) + 1;
      for (const [id, button] of this.buttons) {
        button.setAttribute("aria-pressed", String(id === this.desired));
        button.querySelector(".n").textContent = number.format(counts[id] || 0);
      }
    }

    // A tally from the public read, the live stream or the own-votes read (with `mine`, the
    // reader's reaction it includes). A tally older than the one shown is dropped, so a
    // stale cached body cannot undo a vote; a vote whose seq the tally reached is in it.
    onTally(tally, mine) {
      if (!tally || !tally.counts) return;
      if (this.inFlight) {
        // It may or may not include the vote in flight: apply it once that vote's seq is known.
        if (!this.held || tally.seq >= this.held[0].seq) this.held = [tally, mine];
        return;
      }
      if (!this.server || tally.seq >= this.server.seq) {
        this.server = tally;
        while (this.votes.length && this.votes[0][0] <= tally.seq) this.base = this.votes.shift()[1];
      }
      if (mine !== undefined && (this.server === tally || !this.votes.length)) {
        this.base = mine;
        if (!this.votes.length) this.confirmed = this.desired = mine;
      }
      this.render();
    }

    choose(id) {
      this.desired = this.desired === id ? null : id;
      this.say("");
      this.render();
      this.send();
    }

    // One vote at a time; clicks meanwhile only change what the next one sends.
    async send() {
      if (this.inFlight || this.desired === this.confirmed) return;
      const run = this.run;
      const target = this.desired;
      this.inFlight = true;
      let status = 0;
      let seq = null;
      let site = false;
      try {
        for (let retry = true; ; retry = false) {
          const reader = await credential(this.ingestUrl, true);
          site = reader.site;
          const r = await postVote(this.ingestUrl + "/v1/votes", {
            method: "POST",
            headers: Object.assign({ "Content-Type": "application/json" }, bearer(reader.token)),
            body: JSON.stringify({ article_id: this.article, reaction: target, client_ts: Date.now() }),
          });
          status = r.status;
          // An anonymous token ingest no longer takes (expired, keys rotated): a new one, once.
          if (status === 401 && !site && retry) {
            drop(reader.token);
            continue;
          }
          if (status === 202) seq = (await r.json()).seq;
          break;
        }
      } catch (e) {
        status = e.status || 0;
      }
      this.inFlight = false;
      if (run !== this.run) return;
      const held = this.held;
      this.held = null;
      if (typeof seq == "number") {
        this.confirmed = target;
        this.votes.push([seq, target]);
      } else {
        this.desired = this.confirmed;
        this.say(
          status === 429
            ? "You're reacting very quickly. Please wait a moment and try again."
            : status === 401 && site
            ? "Please sign in again to react."
            : "Sorry, your reaction couldn't be saved. Please try again."
        );
      }
      if (held) this.onTally(held[0], held[1]);
      this.render();
      this.send();
    }

    say(text) {
      if (this.message) this.message.textContent = text;
    }
  }

  customElements.define("reaction-bar", ReactionBar);
})();
