// The sandbox pages: plain JavaScript, no libraries, polling the /_sandbox JSON API.
"use strict";

// The page's words, in its language, from the server (rchat/sandbox/i18n.py): one
// catalogue for the page and its script. t("key", {name: value}) fills "%(name)s".
const TEXTS = JSON.parse(document.getElementById("sandbox-texts").textContent);

function t(key, values) {
  const text = TEXTS[key] === undefined ? key : TEXTS[key];
  return text.replace(/%(?:\((\w+)\)s|%)/g, (match, name) => (name ? String(values[name]) : "%"));
}

async function api(method, path, body) {
  const options = { method, headers: { "Content-Type": "application/json; charset=utf-8" } };
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.reason || "HTTP " + response.status);
  return data;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => (k === "class" ? (node.className = v) : node.setAttribute(k, v)));
  // textContent only: messages are shown as text, never as HTML.
  children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
  return node;
}

function show(data) {
  return typeof data === "string" ? data : JSON.stringify(data);
}

function httpUrl(value) {
  return typeof value === "string" && /^https?:\/\//i.test(value.trim()) ? value.trim() : "";
}

// What the site sent, as an end user's app shows it: an image as a picture, a file as
// a link with its name (both only for http(s) URLs), anything else as text.
function content(entry) {
  const data = entry.data;
  const fields = data && typeof data === "object" ? data : {};
  const url = httpUrl(typeof data === "string" ? data : fields.url);
  const name = typeof fields.name === "string" ? fields.name : "";
  if (entry.type === "image" && url) {
    return el("a", { href: url, target: "_blank", rel: "noopener noreferrer" },
      el("img", { class: "thumb", src: url, alt: name || t("image"), loading: "lazy", referrerpolicy: "no-referrer" }));
  }
  if (entry.type === "file" && url) {
    return el("a", { class: "file", href: url, target: "_blank", rel: "noopener noreferrer" }, "📎 " + (name || url));
  }
  return entry.type === "text" ? data : entry.type + ": " + show(data);
}

function formData(form) {
  const out = {};
  new FormData(form).forEach((v, k) => { if (v !== "") out[k] = v; });
  return out;
}

function every(ms, fn) {
  fn();
  setInterval(fn, ms);
}

// --- times, as the site shows them ----------------------------------------------------
// In the site's time zone (the page's data-time-zone, its TIME_ZONE): today "14:05",
// yesterday "Yesterday 14:05", this year "3 Dec 14:05", before "3 Dec 2025"; the full
// date and time in the title; in Thai, Thai months and the Buddhist era ("2 ธ.ค. 2568").
// server.py's when_text / full_text write the same. Intl gives the numbers in the zone;
// the words are the server's (TEXTS.time: rchat.ui.when's), not Intl's (its en-GB would
// write "Sept").

function zoned(date, timeZone) {
  const parts = {};
  new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "numeric", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(date).forEach((p) => { parts[p.type] = p.value; });
  const two = (v) => String(Number(v)).padStart(2, "0");
  return {
    year: Number(parts.year), month: Number(parts.month), day: Number(parts.day),
    clock: two(parts.hour) + ":" + two(parts.minute), second: two(parts.second),
    // Days since 1970 of the date in the zone: today minus this is 1 for yesterday.
    days: Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)) / 86400000,
  };
}

function whenText(at, timeZone, now, words) {
  const w = words || TEXTS.time;
  const shown = zoned(new Date(at), timeZone);
  const today = zoned(now || new Date(), timeZone);
  if (shown.days === today.days) return shown.clock;
  if (shown.days === today.days - 1) return w.yesterday.replace("%(time)s", shown.clock);
  const day = shown.day + " " + w.months_short[shown.month - 1];
  return shown.year === today.year ? day + " " + shown.clock : day + " " + (shown.year + w.era_offset);
}

function fullText(at, timeZone, words) {
  const w = words || TEXTS.time;
  const shown = zoned(new Date(at), timeZone);
  return shown.day + " " + w.months[shown.month - 1] + " " + (shown.year + w.era_offset) + " " +
    shown.clock + ":" + shown.second;
}

function timeEl(at, timeZone) {
  return el("time", { datetime: at, title: fullText(at, timeZone) }, whenText(at, timeZone));
}

// --- chat page ---------------------------------------------------------------------

function webhookNote(entry) {
  const w = entry.webhook || {};
  if (w.pending) return [t("webhook_pending"), false];
  if (w.ok) return [t("webhook_delivered", { status: w.status }), false];
  if (w.status) return [t("webhook_refused", { status: w.status, answer: w.answer || "" }), true];
  return [w.error || t("webhook_failed"), true];
}

// A reply's sender label in the page's language (server.py: i18n.label_text).
const LABEL_EMOJI = { bot: "🤖", rule: "⚙", person: "👤" };

function labelText(label) {
  const name = label.name || "";
  let shown;
  if (label.kind === "bot") shown = t("label_bot");
  else if (label.kind === "rule") shown = name ? t("label_rule_named", { name }) : t("label_rule");
  else shown = name || t("label_person");
  return LABEL_EMOJI[label.kind] + " " + shown;
}

function chatPage() {
  const body = document.body.dataset;
  const chatId = body.chatId;
  const zone = body.timeZone || "UTC";
  const thread = document.getElementById("thread");
  let last = "";

  async function refresh() {
    let chat;
    try {
      chat = await api("GET", "/_sandbox/chats/" + encodeURIComponent(chatId));
    } catch (e) {
      return;
    }
    const text = JSON.stringify(chat.entries);
    if (text === last) return;
    last = text;
    thread.replaceChildren(
      ...chat.entries.map((entry) => {
        const bubble = el("div", { class: "bubble" }, content(entry));
        let meta;
        if (entry.from === "user") {
          const [note, bad] = webhookNote(entry);
          meta = el("div", { class: bad ? "meta bad" : "meta" }, timeEl(entry.at, zone), " · " + note);
        } else {
          meta = el("div", { class: "meta" }, timeEl(entry.at, zone), " · " + t("from_the_site"));
        }
        // Who wrote a reply (the server's label: kind is bot, rule or person only).
        const label = entry.label;
        if (!label) return el("li", { class: entry.from }, bubble, meta);
        const sender = el("div", { class: "sender" }, labelText(label));
        return el("li", { class: entry.from + " sender-" + label.kind }, sender, bubble, meta);
      })
    );
    thread.lastElementChild && thread.lastElementChild.scrollIntoView({ block: "end" });
  }

  document.getElementById("compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = event.target.elements.text;
    const error = document.getElementById("compose-error");
    error.textContent = "";
    const text = input.value;
    input.value = "";
    try {
      await api("POST", "/_sandbox/chats/" + encodeURIComponent(chatId) + "/messages", {
        text, channel: body.channel, name: body.name || undefined,
      });
    } catch (e) {
      error.textContent = e.message;
      input.value = text;
    }
    refresh();
  });
  every(1000, refresh);
}

function lastFrom(last) {
  if (last.label) return labelText(last.label);
  return last.from === "user" ? t("from_user") : t("from_site");
}

// A fault as words: "answers HTTP 503, 1 of 2 call(s) hit".
function faultText(f) {
  const parts = [];
  if (f.status !== null && f.status !== undefined) parts.push(t("fault_status_is", { status: f.status }));
  if (f.drop) parts.push(t("fault_drop_is"));
  if (f.retry_after !== null && f.retry_after !== undefined) parts.push(t("fault_retry_after_is", { seconds: f.retry_after }));
  if (f.latency_ms) parts.push(t("fault_latency_is", { ms: f.latency_ms }));
  if (f.share !== 1) parts.push(t("fault_share_is", { percent: Math.round(f.share * 100) }));
  parts.push(t("fault_on") + " " + t("on_" + f.on));
  parts.push(f.count ? t("fault_count_is", { applied: f.applied, count: f.count })
    : t("fault_until_cleared_is", { applied: f.applied }));
  return "#" + f.id + " " + parts.join(", ");
}

// A setting's value as words: yes / no, "(none)" for nothing, lists joined.
function settingText(value) {
  if (value === true) return t("yes");
  if (value === false) return t("no");
  if (value === "" || value === null || (Array.isArray(value) && !value.length)) return t("none");
  return Array.isArray(value) ? value.join(", ") : show(value);
}

// --- index page --------------------------------------------------------------------

function indexPage() {
  const rows = document.querySelector("#chats tbody");

  async function refresh() {
    const [{ chats }, { faults }, info] = await Promise.all([
      api("GET", "/_sandbox/chats"), api("GET", "/_sandbox/faults"), api("GET", "/_sandbox/info"),
    ]).catch(() => [{ chats: [] }, { faults: [] }, {}]);
    document.getElementById("no-chats").hidden = chats.length > 0;
    rows.replaceChildren(
      ...chats.map((c) => {
        const href = "/chat/" + encodeURIComponent(c.chat_id) + "?channel=" + encodeURIComponent(c.channel);
        return el("tr", {},
          el("td", {}, el("a", { href }, c.chat_id)), el("td", {}, c.channel), el("td", {}, c.name),
          el("td", {}, c.messages), el("td", {}, c.last ? lastFrom(c.last) + ": " + show(c.last.data).slice(0, 60) : ""));
      })
    );
    document.getElementById("faults").replaceChildren(
      ...(faults.length ? faults.map((f) => el("li", { "data-fault": JSON.stringify(f) }, faultText(f)))
        : [el("li", { class: "muted" }, t("no_faults"))])
    );
    document.getElementById("info").replaceChildren(
      ...Object.entries(info).flatMap(([k, v]) => [
        el("dt", { "data-key": k }, TEXTS.info[k] || k), el("dd", {}, settingText(v)),
      ])
    );
  }

  document.getElementById("open-chat").addEventListener("submit", (event) => {
    event.preventDefault();
    const f = formData(event.target);
    let href = "/chat/" + encodeURIComponent(f.chat_id) + "?channel=" + encodeURIComponent(f.channel);
    if (f.name) href += "&name=" + encodeURIComponent(f.name);
    window.location.href = href;
  });
  document.getElementById("burst").addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = formData(event.target);
    const out = document.getElementById("burst-result");
    out.textContent = t("burst_sending");
    try {
      const r = await api("POST", "/_sandbox/burst", { messages: Number(f.messages), chats: Number(f.chats) });
      out.textContent = t("burst_done", r);
    } catch (e) {
      out.textContent = e.message;
    }
    refresh();
  });
  document.getElementById("fault").addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = formData(event.target);
    const spec = { on: f.on, drop: f.drop === "on" };
    ["status", "retry_after", "latency_ms", "count"].forEach((k) => { if (f[k]) spec[k] = Number(f[k]); });
    if (f.share && Number(f.share) !== 1) spec.share = Number(f.share);
    const error = document.getElementById("fault-error");
    error.textContent = "";
    try {
      await api("POST", "/_sandbox/faults", spec);
    } catch (e) {
      error.textContent = e.message;
    }
    refresh();
  });
  document.getElementById("clear-faults").addEventListener("click", async () => {
    await api("DELETE", "/_sandbox/faults");
    refresh();
  });
  every(2000, refresh);
}

if (document.body.dataset.page === "chat") chatPage();
else indexPage();
