// Reactions widget, ES module: generated from src/reaction-bar.js by build.py.
const SCRIPT_URL = import.meta.url;
const CSS = ":host{--rx-bg:#fff;--rx-fg:#1f2328;--rx-muted:#59636e;--rx-border:#d1d9e0;--rx-hover:#f3f5f7;--rx-pressed-bg:#ddf4ff;--rx-pressed-border:#0969da;--rx-focus:#0969da;--rx-radius:999px;--rx-gap:.5rem;--rx-font:inherit;display:block;min-height:2em;font:var(--rx-font);color:var(--rx-fg)}@media (prefers-color-scheme:dark){:host{--rx-bg:#151b23;--rx-fg:#f0f6fc;--rx-muted:#9198a1;--rx-border:#3d444d;--rx-hover:#212830;--rx-pressed-bg:#0c2d6b;--rx-pressed-border:#4493f8;--rx-focus:#4493f8}}:host([hidden]){display:none}.bar{display:flex;flex-wrap:wrap;gap:var(--rx-gap)}.rx{display:inline-flex;align-items:center;gap:.35em;margin:0;padding:.35em .8em;border:1px solid var(--rx-border);border-radius:var(--rx-radius);background:var(--rx-bg);color:inherit;font:inherit;line-height:1.25;letter-spacing:normal;word-spacing:normal;text-transform:none;text-indent:0;text-align:center}button.rx{cursor:pointer}button.rx:hover{background:var(--rx-hover)}button.rx[aria-disabled=true]{cursor:default;background:var(--rx-bg)}.rx[aria-pressed=true]{background:var(--rx-pressed-bg);border-color:var(--rx-pressed-border);font-weight:600}.rx:focus-visible{outline:3px solid var(--rx-focus);outline-offset:2px}.e{font-family:\"Apple Color Emoji\",\"Segoe UI Emoji\",\"Noto Color Emoji\",sans-serif}.n{color:var(--rx-muted);font-variant-numeric:tabular-nums}.n:empty{display:none}.rx[aria-pressed=true] .n{color:inherit}.msg{margin:.4em 0 0;font-size:.875em;color:var(--rx-muted)}:host([compact]) .bar{gap:.25rem}:host([compact]) .rx{gap:.25em;padding:.2em .5em}:host([compact]) .l{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}@media (prefers-reduced-motion:no-preference){.rx{transition:background .15s,border-color .15s}}";
const ARTICLE = /^[A-Za-z0-9._:~-]{1,128}$/;
const TOKEN_KEY = "reactions.reader-token";
const BULK_MAX = 100;
const QUERY_MAX = 6000;
const DAY = 864e5;
const web = typeof document == "object";
const Base = web ? HTMLElement : class {};
const tag = web && (document.currentScript || [...document.scripts].find((s) => s.src == SCRIPT_URL));
const own = web ? new URL(SCRIPT_URL || location.href, location.href).origin : "";
const setting = (name) => (tag && tag.dataset[name]) || "";
const DEFAULT_READER = setting("reader") || own;
const DEFAULT_INGEST = setting("ingest") || own;
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
const heldToken = () => {
const t = stored(TOKEN_KEY);
return t && typeof t.token == "string" && t.expires > Date.now() ? t : null;
};
const keep = (t) => store(TOKEN_KEY, t);
const drop = (token) => {
if ((heldToken() || {}).token === token) keep(null);
};
const due = (t) => t.expires - Date.now() < Math.min((t.expires - t.issued) / 10, 30 * DAY);
const post = (ingest, token) =>
fetch(ingest + "/v1/readers", { method: "POST", headers: token ? bearer(token) : {} }).catch(() => ({ status: 0 }));
const issued = async (r) => {
const body = await r.json();
let life = 0;
try {
const claims = JSON.parse(atob(body.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
life = (claims.exp - claims.iat) * 1e3;
} catch {}
const now = Date.now();
const t = { token: body.token, reader_id: body.reader_id, issued: now };
t.expires = now + (life > 0 ? life : Date.parse(body.expires_at) - now);
keep(t);
return t;
};
const obtain = async (ingest, mint) => {
const held = heldToken();
if (held && !due(held)) return held;
if (held) {
const r = await post(ingest, held.token);
if (r.status === 201) return issued(r);
if (r.status !== 401) return held;
drop(held.token);
}
if (!mint) return null;
const r = await post(ingest);
if (r.status !== 201) throw failure(r.status);
return issued(r);
};
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
const credential = async (ingest, mint) => {
const site = provider && (await provider());
if (site) return { token: site, site: true };
const next = () => obtain(ingest, mint);
const t = await (tokens = tokens.then(next, next));
return t && { token: t.token, site: false };
};
const warm = new Map();
const postVote = (url, init) => {
const ready = warm.get(url);
if (ready === true) return fetch(url, init);
const response = (ready || Promise.resolve()).then(() => fetch(url, init));
warm.set(url, response.then(() => warm.set(url, true), () => {}));
return response;
};
const services = new Map();
const service = (url) => {
let s = services.get(url);
if (!s) {
s = { url, queue: new Map(), ids: [], streams: [], fails: 0, delay: 2e3, configs: {}, wait: 2e3 };
services.set(url, s);
}
return s;
};
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
fetch(s.url + "/v1/reactions" + query(ids), { cache: "no-cache" })
.then(json)
.then((body) => ids.forEach((a) => deliver(s, a, body.articles[a])), () => {});
}
open(s);
s.delay = Math.min(s.delay * 2, 6e4);
s.tick = setTimeout(() => poll(s), jitter(s.delay));
};
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
const adoptAll = (from, vote) =>
bars.forEach((b) => b !== from && b.ingestUrl === vote.ingest && b.article === vote.article && b.adopt(vote.seq, vote.reaction));
const accepted = (from, vote) => {
noteVote(vote);
adoptAll(from, vote);
if (tabs && !vote.site) tabs.postMessage(vote);
};
const anew = () =>
bars.forEach((bar) => {
if (!bar.inFlight) bar.forget();
bar.load();
});
const reload = (s) => {
if (s.reload) return;
s.reload = setTimeout(() => {
s.reload = 0;
s.wait = Math.min(s.wait * 2, 6e4);
bars.forEach((b) => b.down && b.readerUrl === s.url && b.load());
}, jitter(s.wait));
};
let settle = 0;
const later = () => {
clearTimeout(settle);
settle = setTimeout(syncAll, 400);
};
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
const root = this.shadowRoot || this.attachShadow({ mode: "open" });
const rendered = root.querySelector(".bar[data-article]");
const lang = this.closest("[lang]");
this.language = (lang && lang.lang) || (rendered && rendered.lang) || "";
const texts = (this.texts = TEXTS[this.language.split("-")[0].toLowerCase()] || TEXTS.en);
this.readonly = this.hasAttribute("readonly");
this.below = +(this.getAttribute("hide-counts-below") || (rendered && rendered.dataset.hideCountsBelow) || 0);
this.server = null;
this.base = null;
this.votes = [];
this.last = -1;
this.confirmed = null;
this.desired = null;
this.inFlight = false;
this.held = null;
if (!ARTICLE.test(article)) {
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
this.last = Math.max(this.last, mine.seq);
if (mine.recent) this.adopt(mine.recent[0], mine.recent[1]);
}
if (mine !== undefined) s.wait = 2e3;
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
retry() {
this.down = true;
reload(service(this.readerUrl));
}
forget() {
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
onTally(tally, mine) {
if (!tally || !tally.counts) return;
if (this.inFlight) {
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
const counts = this.render();
if (counts && this.server === tally) {
const total = Object.values(counts).reduce((a, b) => a + b, 0);
this.emit("tally", { counts, total, seq: tally.seq });
}
}
adopt(seq, reaction) {
if (!this.run || !this.buttons || seq <= this.last) return;
if (this.inFlight) {
if (!this.later || seq > this.later[0]) this.later = [seq, reaction];
return;
}
this.last = seq;
if (this.server && this.server.seq >= seq) this.base = reaction;
else {
this.votes.push([seq, reaction]);
this.votes.sort((a, b) => a[0] - b[0]);
}
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
async send() {
if (this.inFlight || this.desired === this.confirmed) return;
const run = this.run;
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
if (status === 401 && !site && retry) {
drop(reader.token);
retry = false;
anew();
continue;
}
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
if (run !== this.run) {
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
this.announce(target);
} else {
this.desired = this.confirmed;
if (!status) bars.forEach((b) => b.article === article && b.retry());
this.emit("refused", { status, code });
this.say(status === 429 ? texts.fast : status === 401 && site ? texts.signin : texts.failed);
}
if (held) this.onTally(held[0], held[1]);
if (later && later[0] > this.last) {
this.adopt(later[0], later[1]);
this.announce(later[1]);
}
this.render();
this.send();
}
announce(reaction) {
const button = this.buttons.get(reaction);
if (reaction && !button) return;
this.say(button ? this.texts.set.replace("$", button.querySelector(".l").textContent) : this.texts.cleared);
}
say(text) {
if (this.message) {
this.message.lang = this.texts == TEXTS.en ? "en" : this.language;
this.message.textContent = text;
}
}
}
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
