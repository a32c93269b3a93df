/* rchat reply box: attaching an image or a file. Says the chosen file's name and size
   (and, before uploading, when it is larger than the site accepts); a file dropped on
   the reply box or pasted into the message is attached as if chosen; Enter in an empty
   message sends a chosen file. All optional: without script the file input is a plain
   one, and the server checks every file again. No inline script or style. */
(function () {
  "use strict";

  function sizeText(bytes) {
    var units = ["B", "KB", "MB", "GB"];
    var value = bytes;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }

  function setUp(box) {
    var form = box.closest("form");
    var input = box.querySelector("input[type=file]");
    var chosen = box.querySelector("[data-rchat-attach-chosen]");
    if (!form || !input || !chosen) return;
    var limit = parseInt(input.getAttribute("data-max-bytes"), 10) || 0;

    function show() {
      var file = input.files && input.files[0];
      chosen.textContent = "";
      chosen.classList.remove("rchat-attach-too-large");
      if (!file) return;
      chosen.textContent = file.name + " · " + sizeText(file.size);
      if (limit && file.size > limit) {
        chosen.textContent += " — " + box.getAttribute("data-too-large");
        chosen.classList.add("rchat-attach-too-large");
      }
    }

    function attach(files) {
      if (!files || !files.length) return false;
      var picked = new DataTransfer();
      picked.items.add(files[0]);
      input.files = picked.files;
      show();
      return true;
    }

    input.addEventListener("change", show);
    form.addEventListener("dragover", function (event) {
      if (event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") !== -1) {
        event.preventDefault();
        form.classList.add("rchat-drop");
      }
    });
    form.addEventListener("dragleave", function () {
      form.classList.remove("rchat-drop");
    });
    form.addEventListener("drop", function (event) {
      form.classList.remove("rchat-drop");
      if (event.dataTransfer && attach(event.dataTransfer.files)) event.preventDefault();
    });
    var text = form.querySelector("textarea");
    if (text) {
      text.addEventListener("paste", function (event) {
        var data = event.clipboardData;
        if (data && data.files && data.files.length && attach(data.files)) event.preventDefault();
      });
      text.addEventListener("keydown", function (event) {
        // inbox.js sends on Enter only when there is text; a file alone is a reply too.
        if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
        if (!text.value.trim() && input.files && input.files.length) {
          event.preventDefault();
          if (form.requestSubmit) form.requestSubmit();
          else form.submit();
        }
      });
    }
    show();
  }

  function start() {
    document.querySelectorAll("[data-rchat-attach]").forEach(setUp);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
