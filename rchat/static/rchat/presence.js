/* rchat presence: tells the site that this agent has the conversation open, and when
   they type a reply, so that colleagues on the same conversation read "Somchai is also
   viewing" / "Somchai is typing…" (the thread's poll brings that line; this file only
   reports). It posts the hidden form[data-rchat-presence] (its CSRF token, and a
   "state"): "viewing" every VIEWING_BEAT ms while the tab is visible, "typing" at most
   every TYPING_BEAT ms while a key changes the reply box, and "left" (a beacon, which
   survives the page going away) when the tab is hidden or the page is left. Used by
   the inbox and by admin's chat room page; without it the pages work, colleagues just
   do not see each other. A file of its own, so a strict Content-Security-Policy
   (script-src 'self') allows it. */
(function () {
  "use strict";

  var VIEWING_BEAT = 5000;
  var TYPING_BEAT = 3000;
  var lastKey = 0;
  var lastTyping = 0;
  var timer = null;

  function reportForm() {
    return document.querySelector("form[data-rchat-presence]");
  }

  function body(form, state) {
    var data = new FormData(form);
    data.set("state", state);
    return data;
  }

  function report(state) {
    var form = reportForm();
    if (!form) return;
    fetch(form.action, { method: "POST", body: body(form, state), credentials: "same-origin" })
      .catch(function () { /* one lost beat: the next one says it again */ });
  }

  function leave() {
    var form = reportForm();
    if (!form) return;
    if (!(navigator.sendBeacon && navigator.sendBeacon(form.action, body(form, "left")))) {
      fetch(form.action, {
        method: "POST", body: body(form, "left"), credentials: "same-origin", keepalive: true,
      }).catch(function () {});
    }
  }

  function beat() {
    // While keys come, the "typing" beats say the agent is here.
    if (document.hidden || Date.now() - lastKey < TYPING_BEAT) return;
    report("viewing");
  }

  function start() {
    if (timer !== null) return;
    report("viewing");
    timer = setInterval(beat, VIEWING_BEAT);
  }

  function stop() {
    if (timer === null) return;
    clearInterval(timer);
    timer = null;
    leave();
  }

  document.addEventListener("input", function (event) {
    if (!(event.target.closest && event.target.closest("form.rchat-reply"))) return;
    var now = Date.now();
    lastKey = now;
    if (now - lastTyping >= TYPING_BEAT) {
      lastTyping = now;
      report("typing");
    }
  });

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) stop();
    else start();
  });
  window.addEventListener("pagehide", stop);
  // Back to a page kept in the back/forward cache: it is open again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted && !document.hidden) start();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (reportForm() && !document.hidden) start();
  });
})();
