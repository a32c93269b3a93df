/* rchat admin: a chat room's change page keeps its conversation up to date without a
   reload: new messages, each reply's status (Queued, Sending, Sent, Failed with Retry)
   and who else has the room open. Every PERIOD ms, while the tab is visible, it asks
   #rchat-live's data-live-url (ChatRoomAdmin.live_view), which answers 204 while
   nothing changed and the conversation's HTML otherwise; that replaces #rchat-live,
   keeping where the operator had scrolled. Admin has no htmx: plain fetch. Without
   script the page is as it was, only not live. A file of its own, so a strict
   Content-Security-Policy (script-src 'self') allows it. */
(function () {
  "use strict";

  var PERIOD = 2000;
  var busy = false;

  function live() {
    return document.getElementById("rchat-live");
  }

  function swap(current, html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var fresh = template.content.firstElementChild;
    // Anything else (a sign-in page after the session ended) is not the conversation.
    if (!fresh || fresh.id !== "rchat-live") return;
    var box = current.querySelector(".rchat-thread");
    var scroll = box ? box.scrollTop : 0;
    current.replaceWith(fresh);
    var freshBox = fresh.querySelector(".rchat-thread");
    // The thread is column-reverse: 0 is its newest message, where it stays.
    if (freshBox) freshBox.scrollTop = scroll;
  }

  function poll() {
    var current = live();
    if (!current || busy || document.hidden) return;
    busy = true;
    fetch(current.getAttribute("data-live-url"), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        return response.status === 200 && !response.redirected ? response.text() : null;
      })
      .then(function (html) {
        if (html && live() === current) swap(current, html);
      })
      .catch(function () { /* the next poll tries again */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!live()) return;
    setInterval(poll, PERIOD);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) poll();
    });
  });
})();
