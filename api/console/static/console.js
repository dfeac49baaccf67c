// Progressive enhancement only: every page works without this file.
// 1. Times: rewrite each <time datetime> into the viewer's own time zone.
// 2. Destructive buttons (data-confirm) ask once before submitting.
(function () {
  "use strict";
  var fmt;
  try {
    // (dateStyle cannot be combined with timeZoneName: spell the fields out)
    fmt = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
                                               minute: "2-digit", timeZoneName: "short" });
  } catch (e) { return; }
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d.getTime())) { el.textContent = fmt.format(d); }
  });
  document.addEventListener("submit", function (ev) {
    var button = ev.submitter;
    var question = button && button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); }
  });
})();
