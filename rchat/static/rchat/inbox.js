/* rchat inbox: keeps the thread scrolled to the newest message across polls, sends
   on Enter, shows only the reply fields of the chosen message type, applies the
   status filter when it changes, and answers the keyboard shortcuts (press "?" on a
   page for the list; the panel is #rchat-keys in inbox.html). Everything here is optional: without JavaScript the
   pages work with plain forms. No page has inline script, so a strict
   Content-Security-Policy (script-src 'self') allows all of it. */
(function () {
  "use strict";

  var NEAR_BOTTOM = 80;
  var wasAtBottom = true;
  var savedScroll = 0;

  function messagesBox() {
    return document.getElementById("rchat-messages");
  }

  function scrollToEnd() {
    var box = messagesBox();
    if (box) box.scrollTop = box.scrollHeight;
  }

  function showFieldsFor(form) {
    // Admin's form has the prefix "reply-": any radio whose name ends in "type".
    var checked = form.querySelector('input[type=radio][name$="type"]:checked');
    var type = checked ? checked.value : "text";
    form.querySelectorAll("[data-for-types]").forEach(function (field) {
      var types = field.getAttribute("data-for-types").split(" ");
      field.hidden = types.indexOf(type) === -1;
    });
  }

  function setUpReplyForm() {
    var form = document.querySelector("form.rchat-reply");
    if (!form) return;
    form.classList.add("rchat-js");
    showFieldsFor(form);
    form.addEventListener("change", function (event) {
      if (event.target.type === "radio") showFieldsFor(form);
    });
    var text = form.querySelector("textarea");
    if (text) {
      text.addEventListener("keydown", function (event) {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          if (text.value.trim()) submit(form);
        }
      });
      if (!document.querySelector(".rchat-errors")) text.focus();
    }
    form.addEventListener("submit", function () {
      var button = form.querySelector("[type=submit]");
      if (button) button.disabled = true;
    });
  }

  function submit(form) {
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  // A select marked data-rchat-autosubmit (the status filter) submits its form.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.form && target.hasAttribute("data-rchat-autosubmit")) submit(target.form);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var box = messagesBox();
    if (box && event.detail.target && event.detail.target.id === "rchat-thread") {
      wasAtBottom = box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM;
      savedScroll = box.scrollTop;
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== "rchat-thread") return;
    var box = messagesBox();
    if (!box) return;
    if (wasAtBottom) scrollToEnd();
    else box.scrollTop = savedScroll;
  });

  // --- Keyboard shortcuts ------------------------------------------------------------
  // j / k (ArrowDown / ArrowUp while the list has the focus) pick the next / previous
  // conversation, Enter opens it, r goes to the reply box, Ctrl+Enter (Cmd+Enter)
  // sends, Esc leaves the reply box or closes the help, ? shows the help. While one
  // types in a field only Esc and Ctrl+Enter are shortcuts.

  // The picked conversation, by its link: the list is replaced every two seconds.
  var pickedHref = null;

  function roomLinks() {
    return Array.prototype.slice.call(document.querySelectorAll("#rchat-rooms .rchat-room-item > a"));
  }

  function markPicked(focus) {
    var found = null;
    roomLinks().forEach(function (link) {
      var picked = link.getAttribute("href") === pickedHref;
      link.parentNode.classList.toggle("is-selected", picked);
      if (picked) found = link;
    });
    if (found && focus) found.focus();
    return found;
  }

  function pick(step) {
    var links = roomLinks();
    if (!links.length) return;
    var hrefs = links.map(function (link) { return link.getAttribute("href"); });
    var index = hrefs.indexOf(pickedHref);
    if (index === -1) {
      // Nothing picked yet: start from the open conversation, else before the first.
      var current = document.querySelector("#rchat-rooms .rchat-room-item.is-current > a");
      index = current ? links.indexOf(current) : -1;
    }
    index = index === -1 && step < 0 ? links.length - 1 : Math.max(0, Math.min(links.length - 1, index + step));
    pickedHref = hrefs[index];
    var link = markPicked(true);
    if (link && link.scrollIntoView) link.scrollIntoView({ block: "nearest" });
  }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && ["checkbox", "radio", "submit", "button"].indexOf(target.type) === -1);
  }

  function keysPanel() {
    return document.getElementById("rchat-keys");
  }

  function toggleKeys(show) {
    var panel = keysPanel();
    if (!panel) return;
    panel.hidden = show === undefined ? !panel.hidden : !show;
    if (!panel.hidden) panel.focus();
  }

  function replyField() {
    var form = document.querySelector("form.rchat-reply");
    if (!form) return null;
    var fields = form.querySelectorAll("textarea, input:not([type=hidden]):not([type=radio]):not([type=submit])");
    for (var i = 0; i < fields.length; i++) {
      if (!fields[i].closest("[hidden]")) return fields[i];
    }
    return null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    var target = event.target;
    var inReply = target.closest && target.closest("form.rchat-reply");
    if (event.key === "Escape") {
      var panel = keysPanel();
      if (panel && !panel.hidden) {
        toggleKeys(false);
        event.preventDefault();
      } else if (inReply || isTyping(target)) {
        target.blur();
        event.preventDefault();
      }
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (inReply) {
        event.preventDefault();
        submit(inReply);
      }
      return;
    }
    if (isTyping(target) || event.ctrlKey || event.metaKey || event.altKey) return;
    var inList = target.closest && target.closest("#rchat-rooms");
    var key = event.key;
    if (key === "j" || (key === "ArrowDown" && inList)) {
      event.preventDefault();
      pick(1);
    } else if (key === "k" || (key === "ArrowUp" && inList)) {
      event.preventDefault();
      pick(-1);
    } else if (key === "Enter" && pickedHref && !(target.closest && target.closest("a, button, input, form"))) {
      // A focused link opens on Enter by itself; this is for the focus lost to a poll.
      event.preventDefault();
      window.location.assign(pickedHref);
    } else if (key === "r") {
      var field = replyField();
      if (field) {
        event.preventDefault();
        field.focus();
      }
    } else if (key === "?") {
      event.preventDefault();
      toggleKeys();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-rchat-keys-close]")) toggleKeys(false);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "rchat-rooms") {
      wasInList = !!(document.activeElement && target.contains(document.activeElement));
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "rchat-rooms" && pickedHref) markPicked(wasInList);
  });

  var wasInList = false;

  document.addEventListener("DOMContentLoaded", function () {
    scrollToEnd();
    setUpReplyForm();
  });
})();
