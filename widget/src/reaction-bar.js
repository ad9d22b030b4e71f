// Reactions widget: <reaction-bar article="ID"></reaction-bar>, README "The widget".
// The one source of the ES module (reaction-bar.js) and the classic script
// (reaction-bar.classic.js) that widget/build.py writes: it drops the full-line comments
// and indentation, puts bar.css in place of BAR_CSS, and for the classic script wraps the
// code in a function, drops `export` and reads its URL from document.currentScript.
// No dependencies. Reader and ingest base URLs come from each bar's reader / ingest
// attributes, else from the script tag's data-reader / data-ingest, else from the origin
// this script was loaded from; data-element names the tag (a clash is a choice).
const SCRIPT_URL = import.meta.url;
const CSS = BAR_CSS;
const ARTICLE = /^[A-Za-z0-9._:~-]{1,128}$/;
const TOKEN_KEY = "reactions.reader-token";
const BULK_MAX = 100;
const QUERY_MAX = 6000;
const DAY = 864e5;
const web = typeof document == "object";
// A server (a framework rendering on Node) may import the module: nothing runs there.
const Base = web ? HTMLElement : class {};
const tag = web && (document.currentScript || [...document.scripts].find((s) => s.src == SCRIPT_URL));
const own = web ? new URL(SCRIPT_URL || location.href, location.href).origin : "";
const setting = (name) => (tag && tag.dataset[name]) || "";
const DEFAULT_READER = setting("reader") || own;
const DEFAULT_INGEST = setting("ingest") || own;

// The widget's own texts, by the bar's language (its lang attribute, else the page's):
// the labels come from the reader's configuration in that language.
const TEXTS = {
  en: {
    down: "Reactions are unavailable right now.",
    fast: "You're reacting very quickly. Please wait a moment and try again.",
    failed: "Sorry, your reaction couldn't be saved. Please try again.",
    signin: "Please sign in again to react.",
    closed: "Reactions are closed for this story.",
    set: "Your reaction: $.",
    cleared: "Your reaction was removed.",
  },
  de: {
    down: "Reaktionen sind gerade nicht verfügbar.",
    fast: "Sie reagieren sehr schnell. Bitte warten Sie einen Moment und versuchen Sie es erneut.",
    failed: "Ihre Reaktion konnte leider nicht gespeichert werden. Bitte versuchen Sie es erneut.",
    signin: "Bitte melden Sie sich erneut an, um zu reagieren.",
    closed: "Reaktionen sind für diesen Artikel geschlossen.",
    set: "Ihre Reaktion: $.",
    cleared: "Ihre Reaktion wurde entfernt.",
  },
  fr: {
    down: "Les réactions sont indisponibles pour le moment.",
    fast: "Vous réagissez très vite. Patientez un instant, puis réessayez.",
    failed: "Désolé, votre réaction n’a pas pu être enregistrée. Veuillez réessayer.",
    signin: "Reconnectez-vous pour réagir.",
    closed: "Les réactions sont fermées pour cet article.",
    set: "Votre réaction\u00a0: $.",
    cleared: "Votre réaction a été retirée.",
  },
  es: {
    down: "Las reacciones no están disponibles en este momento.",
    fast: "Estás reaccionando muy rápido. Espera un momento y vuelve a intentarlo.",
    failed: "Lo sentimos, no se pudo guardar tu reacción. Vuelve a intentarlo.",
    signin: "Vuelve a iniciar sesión para reaccionar.",
    closed: "Las reacciones están cerradas para esta noticia.",
    set: "Tu reacción: $.",
    cleared: "Se quitó tu reacción.",
  },
};
const formats = {};
// Counts as the reader's server-rendered bar writes them: the language's compact notation.
const format = (lang) => {
  if (!formats[lang]) {
    try {
      formats[lang] = new Intl.NumberFormat(lang || undefined, { notation: "compact" });
    } catch {
      formats[lang] = new Intl.NumberFormat(undefined, { notation: "compact" });
    }
  }
  return formats[lang];
};

// The id the widget kept before reader tokens names nobody now.
try {
  localStorage.removeItem("reactions.reader-id");
} catch {}

const failure = (status) => Object.assign(new Error("HTTP " + status), { status });
const json = (r) => {
  if (!r.ok) throw failure(r.status);
  return r.json();
};
const bearer = (token) => ({ Authorization: "Bearer " + token });
const make = (tag, cls, part) => {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (part) el.setAttribute("part", part);
  return el;
};

// What the widget keeps: in localStorage, shared by the site's tabs, and in memory for the
// page's life (all there is when storage is blocked).
const memory = {};
const stored = (key) => {
  try {
    return JSON.parse(localStorage.getItem(key)) || memory[key];
  } catch {
    return memory[key];
  }
};
const store = (key, value) => {
  memory[key] = value;
  try {
    if (value) localStorage.setItem(key, JSON.stringify(value));
    else localStorage.removeItem(key);
  } catch {}
};
// The anonymous reader's token, written at the reader's first click, never on a page view.
const heldToken = () => {
  const t = stored(TOKEN_KEY);
  return t && typeof t.token == "string" && t.expires > Date.now() ? t : null;
};
const keep = (t) => store(TOKEN_KEY, t);
// Forget a token ingest refused (expired, revoked), unless another tab replaced it.
const drop = (token) => {
  if ((heldToken() || {}).token === token) keep(null);
};
// Renewed when less than a tenth of its lifetime, at most 30 days, is left.
const due = (t) => t.expires - Date.now() < Math.min((t.expires - t.issued) / 10, 30 * DAY);

// A write not answered within 10 s is given up as unanswered (a hung connection, a
// stalled ingest): the bar then says so, and the writes queued behind it go on.
const timed = (init) => (AbortSignal.timeout ? Object.assign({ signal: AbortSignal.timeout(1e4) }, init) : init);
// POST /v1/readers. A new reader's request has no body and no header, so it is a simple
// request (no CORS preflight); a renewal carries the token.
const post = (ingest, token) =>
  fetch(ingest + "/v1/readers", timed({ method: "POST", headers: token ? bearer(token) : {} })).catch(() => ({
    status: 0,
  }));
const issued = async (r) => {
  const body = await r.json();
  let life = 0;
  try {
    const claims = JSON.parse(atob(body.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    life = (claims.exp - claims.iat) * 1e3;
  } catch {}
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
    // Still valid: renewal is tried again later.
    if (r.status !== 401) return held;
    drop(held.token);
  }
  if (!mint) return null;
  const r = await post(ingest);
  if (r.status !== 201) throw failure(r.status);
  return issued(r);
};
// The readers' accepted votes of the last day, per ingest, reader and article: [seq,
// reaction, when]. Written at a vote (never on a page view). A page loaded before a vote is
// applied (a reload, another tab, the aggregator behind or down) cannot find it in its
// own-votes read; it takes it from here while the read's seq is below the vote's.
const RECENT_KEY = "reactions.recent-votes";
const recentVotes = () => stored(RECENT_KEY) || {};
const recentKey = (ingest, reader, article) => ingest + " " + reader + " " + article;
const fresh = (vote) => (vote && Date.now() - vote[2] < DAY ? vote : null);
const noteVote = ({ ingest, article, reader, seq, reaction }) => {
  const votes = recentVotes();
  for (const k in votes) if (!fresh(votes[k])) delete votes[k];
  const k = recentKey(ingest, reader, article);
  if (!votes[k] || votes[k][0] < seq) votes[k] = [seq, reaction, Date.now()];
  store(RECENT_KEY, votes);
};
// Votes accepted in the site's other tabs (a story open in one, the front page in
// another) are the same anonymous reader's, whose token the tabs share: their bars of that
// story show them too. Not on a site that hands in its own tokens: a tab cannot tell
// whose those are. The channel is made at the first bar, so importing touches no page.
let tabs = null;
const listen = () => {
  if (tabs || typeof BroadcastChannel != "function") return;
  tabs = new BroadcastChannel("reactions-votes");
  tabs.onmessage = ({ data }) => {
    const held = heldToken();
    if (provider || !data || !held || held.reader_id !== data.reader) return;
    adoptAll(null, data);
  };
};
let provider = null;
let tokens = Promise.resolve();
// Whose token a request carries: the site's logged-in reader, else the anonymous reader
// (minted only with `mint`, at a click); null for a reader who never clicked. Token
// requests go one at a time, so bars clicked at once share one new reader; the site's tabs
// take turns too where the browser has Web Locks, so a tab clicked while another's request
// is out waits for it (localStorage reaches other tabs a moment later, so a tab granted the
// lock right after the write can still miss it and make a second reader).
const credential = async (ingest, mint) => {
  const site = provider && (await provider());
  if (site) return { token: site, site: true };
  const locks = navigator.locks;
  const next = () => (locks ? locks.request(TOKEN_KEY, () => obtain(ingest, mint)) : obtain(ingest, mint));
  const t = await (tokens = tokens.then(next, next));
  return t && { token: t.token, site: false };
};

// Votes to an ingest wait until its first one is answered: that one's CORS preflight is
// then cached for every vote after it (votes sent together would each send a preflight).
const warm = new Map();
const postVote = (url, init) => {
  const ready = warm.get(url);
  if (ready === true) return fetch(url, timed(init));
  const response = (ready || Promise.resolve()).then(() => fetch(url, timed(init)));
  warm.set(url, response.then(() => warm.set(url, true), () => {}));
  return response;
};

// Per reader service: its reaction config by language (each one cacheable URL), its live
// streams (below) and the bars waiting for their tallies. Bars connected in the same tick
// are loaded together: one public bulk read per 100 articles, ids sorted and deduplicated
// so that pages with the same bars share one cache entry, and for a reader holding a token
// one private read of their own votes.
const services = new Map();
const service = (url) => {
  let s = services.get(url);
  if (!s) {
    s = { url, queue: new Map(), ids: [], streams: [], fails: 0, delay: 2e3, configs: {}, wait: 2e3 };
    services.set(url, s);
  }
  return s;
};
// Kept per language once it came; a failed one is asked for again at the next load.
const config = (s, lang) => {
  if (!s.configs[lang]) {
    const got = fetch(s.url + "/v1/config" + (lang ? "?lang=" + encodeURIComponent(lang) : "")).then(json);
    s.configs[lang] = got;
    got.catch(() => s.configs[lang] === got && delete s.configs[lang]);
  }
  return s.configs[lang];
};
const loadTally = (bar) =>
  new Promise((resolve, reject) => {
    const s = service(bar.readerUrl);
    if (!s.queue.size) setTimeout(() => flush(bar.ingestUrl, s), 0);
    if (!s.queue.has(bar.article)) s.queue.set(bar.article, []);
    s.queue.get(bar.article).push({ resolve, reject });
  });
const query = (ids) => "?ids=" + ids.map(encodeURIComponent).join(",");
// At most BULK_MAX ids a request, and at most QUERY_MAX characters of them: 100 long ids
// would make a URL of 13 KB, which some CDNs and proxies refuse (8 KB is common).
const chunks = (ids) => {
  const c = [];
  let chunk = [];
  let size = 0;
  for (const id of ids) {
    const n = encodeURIComponent(id).length + 1;
    if (chunk.length === BULK_MAX || (chunk.length && size + n > QUERY_MAX)) {
      c.push(chunk);
      chunk = [];
      size = 0;
    }
    chunk.push(id);
    size += n;
  }
  if (chunk.length) c.push(chunk);
  return c;
};
// Each bar gets [its public tally, its own-votes entry] — the entry is false for a reader
// without a token, undefined if the private read failed.
const flush = (ingest, s) => {
  const queue = s.queue;
  s.queue = new Map();
  const reader = credential(ingest, false);
  for (const chunk of chunks([...queue.keys()].sort())) {
    const q = query(chunk);
    const mine = reader
      .then(async (r) => {
        if (!r) return false;
        const response = await fetch(s.url + "/v1/me/reactions" + q, { headers: bearer(r.token) });
        if (response.status === 401 && !r.site) drop(r.token);
        return json(response);
      })
      .catch(() => undefined);
    Promise.all([fetch(s.url + "/v1/reactions" + q).then(json), mine]).then(
      ([pub, me]) => {
        // With each own entry, the reader's vote of the last day that it may not hold yet.
        const votes = me && recentVotes();
        chunk.forEach((a) => {
          const recent = votes && fresh(votes[recentKey(ingest, me.reader_id, a)]);
          const own = me && me.articles[a] && { ...me.articles[a], recent };
          queue.get(a).forEach((w) => w.resolve([pub.articles[a], me === false ? false : own]));
        });
      },
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
      } catch {
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
// A vote ingest accepted: kept with the reader's recent votes, and taken by the page's
// other bars of the story (a front page may show it twice; `from` is the bar that sent
// it, or null when that bar started anew meanwhile) and by the site's other tabs.
const adoptAll = (from, vote) =>
  bars.forEach((b) => b !== from && b.ingestUrl === vote.ingest && b.article === vote.article && b.adopt(vote.seq, vote.reaction));
const accepted = (from, vote) => {
  noteVote(vote);
  adoptAll(from, vote);
  if (tabs && !vote.site) tabs.postMessage(vote);
};
// Every bar reads its counts and the reader's votes again, forgetting the old reader's.
// `readers` counts the changes: a vote answered after one was the old reader's.
let readers = 0;
const anew = () =>
  ++readers &&
  bars.forEach((bar) => {
    if (!bar.inFlight) bar.forget();
    bar.load();
  });
// Bars that could not load (the reader down or refusing) load again together, in one bulk
// read, 2 s later and then doubling to a minute (jittered), until a load succeeds.
const reload = (s) => {
  if (s.reload) return;
  s.reload = setTimeout(() => {
    s.reload = 0;
    s.wait = Math.min(s.wait * 2, 6e4);
    bars.forEach((b) => b.down && b.readerUrl === s.url && b.load());
  }, jitter(s.wait));
};
// Scrolling settles before the stream changes.
let settle = 0;
const later = () => {
  clearTimeout(settle);
  settle = setTimeout(syncAll, 400);
};
// One viewport above and below: a bar scrolled to gets live counts before it is seen.
// Made at the first bar, so that importing the module touches no page.
let seen = null;
const observe = (bar) => {
  if (!seen) {
    seen = new IntersectionObserver(
      (entries) => {
        entries.forEach((e) => (e.isIntersecting ? near.add(e.target) : near.delete(e.target)));
        later();
      },
      { rootMargin: "100%" }
    );
    document.addEventListener("visibilitychange", syncAll);
  }
  seen.observe(bar);
};

// One constructable stylesheet shared by every bar: no <style> element, so a page whose
// Content-Security-Policy allows no inline style shows the bar as designed.
// (A browser without them, before Safari 16.4, gets a <style> element.)
let sheet = null;
const style = (root) => {
  if (root.adoptedStyleSheets) {
    if (!sheet) (sheet = new CSSStyleSheet()).replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else if (!root.querySelector("style")) root.prepend(Object.assign(make("style"), { textContent: CSS }));
};
const fill = (root, ...nodes) => {
  root.replaceChildren(...nodes);
  style(root);
};

export class ReactionBar extends Base {
  static get observedAttributes() {
    return ["article", "reader", "ingest", "lang", "dir", "types", "hide-counts-below", "readonly"];
  }

  // A site's logged-in reader: `provider` resolves to the site's token for them, or to
  // null for a reader who is not logged in. The bars on the page read their votes again.
  static setTokenProvider(fn) {
    provider = fn;
    anew();
  }

  constructor() {
    super();
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
      this.buttons = null;
      this.start();
    }
  }

  start() {
    this.run = {};
    const article = this.getAttribute("article") || "";
    const attr = (name, fallback) => (this.getAttribute(name) || fallback).replace(/\/+$/, "");
    this.article = article;
    this.readerUrl = attr("reader", DEFAULT_READER);
    this.ingestUrl = attr("ingest", DEFAULT_INGEST);
    // The server's bar, when the page included one (a declarative shadow root): it is
    // taken over in place, its counts kept, so nothing moves.
    const root = this.shadowRoot || this.attachShadow({ mode: "open" });
    const rendered = root.querySelector(".bar[data-article]");
    // The language of the bar's place in the page (its own lang attribute, else an
    // ancestor's). Kept as `language`: the element's `lang` property would write the
    // attribute, which the bar observes, and start it again.
    const lang = this.closest("[lang]");
    this.language = (lang && lang.lang) || (rendered && rendered.lang) || "";
    const texts = (this.texts = TEXTS[this.language.split("-")[0].toLowerCase()] || TEXTS.en);
    this.readonly = this.hasAttribute("readonly");
    this.below = +(this.getAttribute("hide-counts-below") || (rendered && rendered.dataset.hideCountsBelow) || 0);
    this.server = null; // the freshest tally from the server: the highest seq seen
    this.base = null; // the reader's reaction those counts include
    this.votes = []; // [seq, reaction] of the reader's accepted votes not in `server` yet
    this.last = -1; // the seq of the reader's latest vote this bar knows (its own or adopted)
    this.confirmed = null; // the reader's reaction as ingest last accepted it
    this.desired = null; // the reader's reaction as shown
    this.inFlight = false;
    this.held = null; // a tally that came while a vote was in flight
    if (!ARTICLE.test(article)) {
      // Nothing to show, and said where the site's developers look (a bar without an id
      // yet is left quiet: a framework may set it after inserting the element).
      if (article)
        console.warn(
          `Reactions: article="${article.slice(0, 40)}" is not an article id (1 to 128 of A-Z a-z 0-9 . _ : ~ -), so this bar shows nothing.`
        );
      fill(root);
      return;
    }
    style(root);
    if (!this.clicks) {
      this.clicks = true;
      root.addEventListener("click", (e) => {
        const b = e.target.closest("button");
        if (b && !this.readonly) this.choose(b.dataset.reaction);
      });
    }
    if (rendered && !this.buttons) {
      // Marked as taken over: a later change of attributes builds the bar anew.
      rendered.removeAttribute("data-article");
      this.message = root.querySelector(".msg");
      const counts = {};
      this.buttons = new Map();
      for (const span of rendered.querySelectorAll(".rx")) {
        const id = span.dataset.reaction;
        const n = span.querySelector(".n");
        counts[id] = +((n && n.dataset.count) || 0);
        const b = this.button(id);
        b.append(...span.childNodes);
        span.replaceWith(b);
      }
      this.number = format(rendered.lang);
      this.server = { counts, seq: +rendered.dataset.seq };
      // The server's <style> gives way to the shared sheet: the same rules.
      fill(root, ...[...root.children].filter((el) => el.localName != "style"));
      this.render();
    }
    this.closed();
    bars.add(this);
    listen();
    this.load();
    observe(this);
  }

  stop() {
    this.run = null;
    bars.delete(this);
    if (seen) seen.unobserve(this);
    if (near.delete(this)) later();
  }

  // The public tally and the reader's own vote: at start, and when the site's reader changes.
  load() {
    const run = this.run;
    const s = service(this.readerUrl);
    this.down = false;
    Promise.all([this.buttons || config(s, this.language), loadTally(this)]).then(
      ([types, [tally, mine]]) => {
        if (run !== this.run) return;
        if (!this.buttons) this.build(types);
        this.onTally(tally, mine === false ? null : undefined);
        if (mine) {
          this.onTally(mine, mine.mine || null);
          // The read holds the reader's votes up to its seq: none announced later is newer.
          this.last = Math.max(this.last, mine.seq);
          // A vote of this reader accepted after what the read includes.
          if (mine.recent) this.adopt(mine.recent[0], mine.recent[1]);
        }
        if (mine !== undefined) s.wait = 2e3;
        // The reader's own votes could not be read (the reader or Redis down): the counts
        // show, and the own votes are read again with the bars that could not load.
        else this.retry();
      },
      () => {
        if (run !== this.run) return;
        if (!this.buttons) {
          fill(this.shadowRoot, (this.message = this.status()));
          this.say(this.texts.down);
        }
        this.retry();
      }
    );
  }

  // Loaded again with the bars that could not load.
  retry() {
    this.down = true;
    reload(service(this.readerUrl));
  }

  // The reader changed (a site's login, a token refused and replaced): nothing this bar
  // knew of the reader's votes holds; the own-votes read says anew.
  forget() {
    this.unsay();
    this.votes = [];
    this.last = -1;
    this.later = null;
    this.base = this.confirmed = this.desired = null;
  }

  status() {
    const p = make("p", "msg", "message");
    p.setAttribute("role", "status");
    return p;
  }

  button(id) {
    const b = make("button", "rx", "button");
    b.type = "button";
    b.dataset.reaction = id;
    if (this.readonly) b.setAttribute("aria-disabled", "true");
    this.buttons.set(id, b);
    return b;
  }

  // The bar from the reader's configuration in the bar's language: the types the `types`
  // attribute names (all without it), in display order.
  build(c) {
    const bar = make("div", "bar", "bar");
    const only = this.getAttribute("types");
    const shown = only && only.split(/[\s,]+/);
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", c.group_label);
    bar.lang = c.lang;
    bar.dir = this.getAttribute("dir") || c.dir;
    this.number = format(c.lang);
    this.buttons = new Map();
    for (const type of c.reactions) {
      if (shown && !shown.includes(type.id)) continue;
      const [e, l, n] = [["e", "emoji", type.emoji], ["l", "label", type.label], ["n", "count", ""]].map(
        ([cls, part, text]) => Object.assign(make("span", cls, part), { textContent: text })
      );
      e.setAttribute("aria-hidden", "true");
      this.button(type.id).append(e, " ", l, " ", n);
      bar.append(this.buttons.get(type.id));
    }
    fill(this.shadowRoot, bar, (this.message = this.status()));
    this.closed();
  }

  closed() {
    if (this.readonly) this.say(this.texts.closed);
  }

  // What is shown: the freshest tally with the reader's vote moved from the reaction it
  // includes to the one chosen — the own delta of votes it does not include yet.
  render() {
    if (!this.buttons) return;
    const counts = Object.assign({}, this.server && this.server.counts);
    if (this.base) counts[this.base] = Math.max(0, (counts[this.base] || 0) - 1);
    if (this.desired) counts[this.desired] = (counts[this.desired] || 0) + 1;
    for (const [id, button] of this.buttons) {
      const pressed = id === this.desired;
      const count = counts[id] || 0;
      button.setAttribute("aria-pressed", pressed);
      button.setAttribute("part", pressed ? "button pressed" : "button");
      button.querySelector(".n").textContent = count < this.below ? "" : this.number.format(count);
    }
    return counts;
  }

  emit(name, detail) {
    detail.article = this.article;
    this.dispatchEvent(new CustomEvent("reaction-" + name, { detail, bubbles: true, composed: true }));
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
      if (!this.votes.length) {
        // The read says where the reader's vote stands (a vote said unsaved, whose answer
        // was lost, may be there): what the bar said of it before no longer holds.
        if (this.desired !== mine) this.unsay();
        this.confirmed = this.desired = mine;
      }
    }
    const counts = this.render();
    if (counts && this.server === tally) {
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      this.emit("tally", { counts, total, seq: tally.seq });
    }
  }

  // The reader's vote `reaction`, at `seq`, accepted from another bar of this story (a
  // front page may show a story twice, or another tab show it): shown here too, counted
  // once. One older than a vote this bar knows is not the reader's latest; a bar with a
  // vote of its own in flight keeps that one.
  adopt(seq, reaction) {
    if (!this.run || !this.buttons || seq <= this.last) return;
    if (this.inFlight) {
      // Taken once this bar's own vote is answered, if it is still the newer one.
      if (!this.later || seq > this.later[0]) this.later = [seq, reaction];
      return;
    }
    this.last = seq;
    if (this.server && this.server.seq >= seq) this.base = reaction;
    else {
      this.votes.push([seq, reaction]);
      this.votes.sort((a, b) => a[0] - b[0]);
    }
    // A click meanwhile (sent next) stays what the reader wants.
    if (this.desired === this.confirmed) this.desired = reaction;
    this.confirmed = reaction;
    this.render();
  }

  choose(id) {
    const previous = this.desired;
    this.desired = previous === id ? null : id;
    this.say("");
    this.render();
    this.emit("vote", { reaction: this.desired, previous, confirmed: false });
    this.send();
  }

  // One vote at a time; clicks meanwhile only change what the next one sends.
  async send() {
    if (this.inFlight || this.desired === this.confirmed) return;
    const run = this.run;
    let who = readers;
    const target = this.desired;
    const [ingest, article] = [this.ingestUrl, this.article];
    this.inFlight = true;
    let status = 0;
    let code = null;
    let seq = null;
    let readerId = null;
    let site = false;
    try {
      for (let retry = true, again = true; ; ) {
        const reader = await credential(ingest, true);
        site = reader.site;
        const r = await postVote(ingest + "/v1/votes", {
          method: "POST",
          headers: Object.assign({ "Content-Type": "application/json" }, bearer(reader.token)),
          body: JSON.stringify({ article_id: article, reaction: target, client_ts: Date.now() }),
        }).catch(() => ({ status: 0 }));
        status = r.status;
        // An anonymous token ingest no longer takes (expired, keys rotated): a new reader,
        // once; the page's bars then read the new reader's votes.
        if (status === 401 && !site && retry) {
          drop(reader.token);
          retry = false;
          anew();
          who = readers; // this vote goes on as the new reader's
          continue;
        }
        // No answer (a reset connection, a lost response): ingest may have taken it. Sent
        // once more a second later; the same reaction twice counts once, and the answer
        // says where the reader's vote stands.
        if (status === 0 && again) {
          again = false;
          await new Promise((resolve) => setTimeout(resolve, 1e3));
          continue;
        }
        if (status === 0) break;
        const body = await r.json().catch(() => ({}));
        if (status === 202) [seq, readerId] = [body.seq, body.reader_id];
        else code = (body.error && body.error.code) || null;
        break;
      }
    } catch (e) {
      status = e.status || 0;
    }
    this.inFlight = false;
    const vote = typeof seq == "number" && { ingest, article, reader: readerId, seq, reaction: target, site };
    if (who !== readers) {
      // The reader changed meanwhile (a site's login): the vote stands, the old reader's,
      // and is not the new one's to show; this bar reads the new reader's votes.
      if (vote) noteVote(vote);
      if (run === this.run) {
        this.held = this.later = null;
        this.forget();
        this.load();
      }
      return;
    }
    if (run !== this.run) {
      // The bar started anew meanwhile (an attribute changed): the vote stands all the same.
      if (vote) accepted(null, vote);
      return;
    }
    const held = this.held;
    const later = this.later;
    const texts = this.texts;
    this.held = this.later = null;
    if (vote) {
      this.emit("vote", { reaction: target, previous: this.confirmed, confirmed: true });
      this.confirmed = target;
      this.votes.push([seq, target]);
      this.votes.sort((a, b) => a[0] - b[0]);
      this.last = Math.max(this.last, seq);
      accepted(this, vote);
      // A vote the reader has since changed is not announced: the next one will be.
      if (this.desired === target) this.announce(target);
    } else {
      this.desired = this.confirmed;
      // Still no answer: ingest may have taken it, so the story's bars read the reader's
      // votes again.
      if (!status) bars.forEach((b) => b.article === article && b.retry());
      this.emit("refused", { status, code });
      this.say(status === 429 ? texts.fast : status === 401 && site ? texts.signin : texts.failed);
    }
    if (held) this.onTally(held[0], held[1]);
    // A newer vote of the reader's from another bar or tab came while this one was out.
    if (later && later[0] > this.last) {
      this.adopt(later[0], later[1]);
      this.announce(later[1]);
    }
    this.render();
    this.send();
  }

  // The reader's own vote is announced; other readers' votes only change the counts.
  // (A reaction this bar does not show, taken from another bar, is not announced here.)
  announce(reaction) {
    const button = this.buttons.get(reaction);
    if (reaction && !button) return;
    this.say(button ? this.texts.set.replace("$", button.querySelector(".l").textContent) : this.texts.cleared);
  }

  // Clear what the bar said of the reader's votes (a closed bar says only that it is closed).
  unsay() {
    if (!this.readonly) this.say("");
  }

  say(text) {
    if (this.message) {
      this.message.lang = this.texts == TEXTS.en ? "en" : this.language;
      this.message.textContent = text;
    }
  }
}

// Registers the element under `name` (the script tag's data-element, else reaction-bar).
// A name another script took is left to it, with a warning saying how to choose another.
let defined = false;
export const define = (name = setting("element") || "reaction-bar") => {
  const taken = customElements.get(name);
  if (taken) {
    if (!taken.setTokenProvider)
      console.warn(
        `Reactions: <${name}> is already defined by another script, so the reactions widget is not. ` +
          `Choose another tag: data-element="news-reactions" on the widget's script tag, or define("news-reactions") from its module.`
      );
    return taken;
  }
  const element = defined ? class extends ReactionBar {} : ReactionBar;
  defined = true;
  customElements.define(name, element);
  return element;
};

if (web && window.customElements) define();
