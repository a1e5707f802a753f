// Cairn's only script. While a page shows something still in progress (elements marked
// data-live), it fetches the same page every 2 seconds and swaps those elements for their
// new versions, keeping ticked checkboxes. Without it every page still reads fine: reload it.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function ticked(part) {
    var names = {};
    part.querySelectorAll("input[type=checkbox]:checked").forEach(function (box) {
      names[box.name + "=" + box.value] = true;
    });
    return names;
  }

  function refresh() {
    var live = document.querySelectorAll("[data-live]");
    if (live.length === 0) return;
    fetch(location.href, { credentials: "same-origin", headers: { "x-cairn-live": "1" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("status " + response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        live.forEach(function (part) {
          var fresh = part.id && next.getElementById(part.id);
          if (!fresh) {
            part.removeAttribute("data-live");
            return;
          }
          var keep = ticked(part);
          fresh.querySelectorAll("input[type=checkbox]").forEach(function (box) {
            if (keep[box.name + "=" + box.value]) box.checked = true;
          });
          part.replaceWith(document.importNode(fresh, true));
        });
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { setTimeout(refresh, PERIOD_MS); });
  }

  setTimeout(refresh, PERIOD_MS);
})();
