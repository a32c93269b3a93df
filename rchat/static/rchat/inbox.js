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
    // Before the Enter handler below: with the suggestions open, Enter picks one.
    setUpCanned(form, text);
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

  // --- Canned responses ---------------------------------------------------------------
  // "/" at the start of the message and a shortcut's first letters list the matching
  // canned responses (from the form's data-canned-url, rendered for this room and
  // agent); ArrowDown / ArrowUp pick one, Enter or a click inserts it, Esc closes the
  // list. The select under the box inserts one with the mouse. Without script,
  // sending "/price" alone sends that canned response (the view does).
  var CANNED_QUERY = /^\/([^\s\/]*)$/;
  var CANNED_FIELDS = ["url", "name", "package_id", "sticker_id", "latitude", "longitude", "title"];

  function cannedInsert(form, item) {
    var text = form.querySelector("textarea");
    var radio = form.querySelector('input[type=radio][name$="type"][value="' + item.type + '"]');
    if (!radio) return;
    var prefix = radio.name.slice(0, -"type".length);
    radio.checked = true;
    showFieldsFor(form);
    if (item.type === "text") {
      text.value = item.data;
      text.focus();
      text.setSelectionRange(text.value.length, text.value.length);
      return;
    }
    if (text && CANNED_QUERY.test(text.value)) text.value = "";
    var data = typeof item.data === "string" ? { url: item.data } : item.data || {};
    CANNED_FIELDS.forEach(function (field) {
      var input = form.querySelector('[name="' + prefix + field + '"]');
      if (input) input.value = data[field] === undefined || data[field] === null ? "" : data[field];
    });
    var send = form.querySelector("[type=submit]");
    if (send) send.focus();
  }

  function setUpCanned(form, text) {
    var pickSelect = form.querySelector("[data-rchat-canned-pick]");
    if (pickSelect) {
      pickSelect.addEventListener("change", function () {
        var option = pickSelect.options[pickSelect.selectedIndex];
        var payload = option && option.getAttribute("data-payload");
        if (payload) cannedInsert(form, JSON.parse(payload));
        pickSelect.value = "";
      });
    }
    var url = form.getAttribute("data-canned-url");
    var list = document.getElementById("rchat-canned-suggest");
    if (!text || !url || !list) return;
    var items = [];
    var active = -1;
    var asked = 0;
    text.setAttribute("aria-controls", list.id);
    text.setAttribute("aria-autocomplete", "list");

    function close() {
      list.hidden = true;
      list.innerHTML = "";
      items = [];
      active = -1;
      text.removeAttribute("aria-activedescendant");
    }

    function mark(index) {
      active = index;
      Array.prototype.forEach.call(list.children, function (li, i) {
        li.classList.toggle("is-active", i === index);
        li.setAttribute("aria-selected", i === index ? "true" : "false");
      });
      if (index >= 0) {
        text.setAttribute("aria-activedescendant", list.children[index].id);
        list.children[index].scrollIntoView({ block: "nearest" });
      }
    }

    function show(results) {
      close();
      items = results;
      if (!items.length) return;
      items.forEach(function (item, i) {
        var li = document.createElement("li");
        li.id = "rchat-canned-" + i;
        li.setAttribute("role", "option");
        var shortcut = document.createElement("strong");
        shortcut.textContent = "/" + item.shortcut;
        var title = document.createElement("span");
        title.className = "rchat-canned-title";
        title.textContent = item.title;
        li.appendChild(shortcut);
        li.appendChild(title);
        // mousedown would take the focus from the message first.
        li.addEventListener("mousedown", function (event) { event.preventDefault(); });
        li.addEventListener("click", function () { pickItem(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      mark(0);
    }

    function pickItem(index) {
      var item = items[index];
      close();
      if (item) cannedInsert(form, item);
    }

    text.addEventListener("input", function () {
      var match = CANNED_QUERY.exec(text.value);
      if (!match) {
        close();
        return;
      }
      var ask = ++asked;
      var sep = url.indexOf("?") === -1 ? "?" : "&";
      fetch(url + sep + "q=" + encodeURIComponent(match[1]), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) { return response.ok ? response.json() : { results: [] }; })
        .then(function (body) {
          // An older answer arriving late must not replace a newer one.
          if (ask === asked && CANNED_QUERY.test(text.value)) show(body.results || []);
        })
        .catch(close);
    });

    text.addEventListener("keydown", function (event) {
      if (list.hidden || !items.length || event.isComposing) return;
      var handled = true;
      if (event.key === "ArrowDown") mark((active + 1) % items.length);
      else if (event.key === "ArrowUp") mark((active - 1 + items.length) % items.length);
      else if (event.key === "Enter" || event.key === "Tab") pickItem(active < 0 ? 0 : active);
      else if (event.key === "Escape") close();
      else handled = false;
      if (handled) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    });
    text.addEventListener("blur", function () { setTimeout(close, 150); });
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
  // sends (in the private note's box: adds the note), n goes to the note, Esc leaves
  // the reply box or closes the help, ? shows the help. While one
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

  function noteField() {
    // The notes panel is a <details>: open it to reach its field.
    var panel = document.getElementById("rchat-notes");
    var field = panel && panel.querySelector("form.rchat-note-form textarea");
    if (field) panel.open = true;
    return field;
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    var target = event.target;
    var inReply = target.closest && target.closest("form.rchat-reply");
    // The private note's form: Enter is a new line there, Ctrl+Enter adds the note.
    var inNote = target.closest && target.closest("form.rchat-note-form");
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
      if (inReply || inNote) {
        event.preventDefault();
        submit(inReply || inNote);
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
    } else if (key === "n") {
      var note = noteField();
      if (note) {
        event.preventDefault();
        note.focus();
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
