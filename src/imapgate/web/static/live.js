/* Live updates from /api/events (server-sent events): the Live page's feed, a
   refresh of the message list shown on a folder page when that folder changes, and
   on a message page its colleagues' notes, claims and replies.
   Entries are built with textContent only: nothing the server sends (mail
   subjects, sender names) is ever parsed as markup.  No inline script anywhere
   (CSP script-src 'self'). */
(function () {
  "use strict";
  var url = document.body.getAttribute("data-events");
  if (!url || !window.EventSource) { return; }
  var feed = document.getElementById("live-feed");
  var state = document.getElementById("live-state");
  var refreshTimer = null;
  var MAX_ENTRIES = 200;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function show(change) {
    if (!feed) { return; }
    var li = el("li", "fresh");
    li.setAttribute("data-kind", change.kind);
    li.appendChild(el("span", "time", new Date(change.time).toLocaleTimeString()));
    if (change.folder) { li.appendChild(el("span", "folder", change.folder)); }
    li.appendChild(el("span", "text", change.text));
    (change.messages || []).forEach(function (m) {
      var line = el("div", "summary");
      if (change.folder) {
        var a = el("a", "", (m.from || "(unknown sender)") + ": " + (m.subject || "(no subject)"));
        a.href = "/messages/" + encodeURIComponent(change.folder) + "/" + m.uid;
        line.appendChild(a);
      }
      li.appendChild(line);
    });
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > MAX_ENTRIES) { feed.removeChild(feed.lastChild); }
  }

  function refreshList(change) {
    var list = document.getElementById("messages");
    if (!list || !window.htmx || list.getAttribute("data-folder") !== change.folder) { return; }
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(function () {
      window.htmx.ajax("GET", window.location.href, { target: "#messages", select: "#messages", swap: "outerHTML" });
    }, 250);
  }

  /* The message page: a colleague's note appears in the notes list; a claim or a reply
     on this message refreshes the claim section and the headers (answered by). */
  function onMessagePage(change) {
    var notes = document.getElementById("notes");
    if (!notes || notes.getAttribute("data-folder") !== change.folder) { return; }
    var uid = Number(notes.getAttribute("data-uid"));
    if ((change.uids || []).indexOf(uid) < 0) { return; }
    if (change.kind === "note" && change.note) {
      var list = document.getElementById("note-list");
      if (!list || list.querySelector('[data-note="' + change.note.id + '"]')) { return; }
      var li = el("li", "fresh");
      li.setAttribute("data-note", String(change.note.id));
      li.appendChild(el("span", "who", change.note.user));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "date muted small", new Date(change.note.time).toLocaleString()));
      li.appendChild(el("div", "note-text", change.note.text));
      list.appendChild(li);
    } else if ((change.kind === "claim" || change.kind === "answered") && window.htmx) {
      window.htmx.ajax("GET", window.location.pathname, { target: "#claim", select: "#claim", swap: "outerHTML" });
      window.htmx.ajax("GET", window.location.pathname, { target: "dl.headers", select: "dl.headers", swap: "outerHTML" });
    }
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () { if (state) { state.textContent = "connected"; } });
  source.addEventListener("error", function () { if (state) { state.textContent = "reconnecting…"; } });
  source.addEventListener("change", function (event) {
    var change;
    try { change = JSON.parse(event.data); } catch (e) { return; }
    window.imapgateLastChange = change.id;
    show(change);
    refreshList(change);
    onMessagePage(change);
  });
})();
