/* rchat's admin pages: the "Copy" button next to a credential's webhook URL copies
   the URL from its data-copy attribute and then reads data-copied ("Copied").
   A file of its own rather than inline handlers, so a strict Content-Security-Policy
   (script-src 'self') allows it. */
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.rchat-copy") : null;
    if (!button || !navigator.clipboard) return;
    event.preventDefault();
    navigator.clipboard.writeText(button.dataset.copy).then(function () {
      button.textContent = button.dataset.copied;
    });
  });
})();
