/* rchat inbox: keeps the thread scrolled to the newest message across polls, sends
   on Enter, shows only the reply fields of the chosen message type, and applies the
   status filter when it changes. Everything here is optional: without JavaScript the
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
    var checked = form.querySelector('input[name="type"]:checked');
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
      if (event.target.name === "type") showFieldsFor(form);
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
      var button = form.querySelector("button[type=submit]");
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

  document.addEventListener("DOMContentLoaded", function () {
    scrollToEnd();
    setUpReplyForm();
  });
})();
