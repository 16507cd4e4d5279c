// The crew's screen (api/console/crew.py): each tap gets an id made here and goes into a queue
// kept in localStorage; the queue is sent in order whenever the network lets it (at once, when
// the phone is back online, and every RETRY_MS). The server answers a repeated id with what the
// first copy did, so a tap whose answer was lost is simply sent again. Plain JavaScript, no
// build step; the page works without it too (the forms post and a page comes back).
(function () {
  "use strict";
  var root = document.getElementById("crew");
  if (!root) return;
  var KEY = "binwatch.crew.queue";
  var RETRY_MS = 3000; // a lost answer or a flaky network is retried this often
  var REFRESH_MS = 30000; // the stops (a re-plan, a disputed stop) are fetched again this often
  var sending = false;

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function save(queue) { localStorage.setItem(KEY, JSON.stringify(queue)); }

  // A version-4 UUID from getRandomValues (crypto.randomUUID needs https, an intranet may not).
  function uuid() {
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function say(text, problem) {
    var box = document.getElementById("crew-message");
    box.textContent = text;
    box.className = problem ? "problem" : "notice";
    box.hidden = !text;
  }

  function showQueued() {
    var queue = load();
    document.getElementById("crew-queued").textContent = String(queue.length);
    document.getElementById("crew-queue").hidden = queue.length === 0;
    var waiting = {};
    queue.forEach(function (entry) { waiting[entry.stop] = true; });
    document.querySelectorAll(".crew-stop").forEach(function (li) {
      var queued = !!waiting[li.dataset.stop];
      li.querySelector(".queued").hidden = !queued;
      li.classList.toggle("waiting", queued);
      li.querySelectorAll("button, input").forEach(function (el) { el.disabled = queued; });
    });
  }

  function readPhoto(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(reader.result); };
      reader.onerror = function () { reject(reader.error); };
      reader.readAsDataURL(file);
    });
  }

  function photoBlob(dataUrl) {
    var parts = dataUrl.split(",");
    var bytes = atob(parts[1]);
    var array = new Uint8Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) array[i] = bytes.charCodeAt(i);
    return new Blob([array], { type: parts[0].slice(5).split(";")[0] });
  }

  function refresh() {
    return fetch("/console/crew/stops", { credentials: "same-origin" }).then(function (answer) {
      if (!answer.ok || answer.redirected) return;
      return answer.text().then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.querySelector("#stops");
        if (fresh) document.getElementById("stops").replaceWith(fresh);
        showQueued();
      });
    }).catch(function () { /* offline: the list stays as it is */ });
  }

  function send(entry) {
    var form = new FormData();
    form.append("csrf", root.dataset.csrf);
    form.append("tap_id", entry.id);
    form.append("action", entry.action);
    form.append("reason", entry.reason);
    if (entry.photo) form.append("photo", photoBlob(entry.photo), entry.photoName || "photo");
    return fetch(entry.url, {
      method: "POST",
      body: form,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  }

  // The server cannot take the tap now (its photo store is down, it is busy): the tap stays
  // queued, and the crew reads why when the server said so.
  function later(answer) {
    var type = answer.headers.get("content-type") || "";
    if (type.indexOf("json") < 0) return false;
    return answer.json().then(function (said) {
      if (said.message) say(said.message, true);
      return false;
    }, function () { return false; });
  }

  // Sends the queue in order; stops at the first tap the network or the server could not take
  // now (it stays queued); a tap the server refused for good leaves the queue with its message.
  function flush() {
    if (sending) return Promise.resolve();
    var queue = load();
    if (!queue.length) return Promise.resolve();
    sending = true;
    var entry = queue[0];
    return send(entry).then(function (answer) {
      if (answer.redirected) { say(root.dataset.msgLogin, true); return false; }
      if (answer.status >= 500 || answer.status === 429) return later(answer);
      var type = answer.headers.get("content-type") || "";
      // JSON from the tap itself; a console error page (its CSRF or scope check) says it in .problem
      var body = type.indexOf("json") >= 0 ? answer.json() : answer.text().then(function (html) {
        var problem = new DOMParser().parseFromString(html, "text/html").querySelector(".problem");
        return { message: problem ? problem.textContent : "" };
      });
      return body.then(function (said) {
        save(load().filter(function (e) { return e.id !== entry.id; }));
        if (answer.ok) say(said.message || "", false);
        else say(said.message || root.dataset.msgFailed, true);
        return true;
      });
    }, function () {
      say(root.dataset.msgOffline, false);
      return false;
    }).then(function (more) {
      sending = false;
      showQueued();
      if (more) return flush().then(function () { if (!load().length) return refresh(); });
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest("form.tap") : null;
    if (!form) return;
    event.preventDefault();
    var button = event.submitter;
    var entry = {
      id: uuid(),
      url: form.getAttribute("action"), // not form.action: the buttons named "action" shadow it
      stop: form.closest(".crew-stop").dataset.stop,
      action: button && button.name === "action" ? button.value : "not_emptied",
      reason: button && button.name === "reason" ? button.value : "",
    };
    var file = form.querySelector("input[type=file]").files[0];
    var ready = Promise.resolve();
    if (file) {
      if (file.size > Number(root.dataset.photoMax)) { say(root.dataset.msgTooBig, true); return; }
      ready = readPhoto(file).then(function (dataUrl) {
        entry.photo = dataUrl;
        entry.photoName = file.name;
      });
    }
    ready.then(function () {
      var queue = load();
      queue.push(entry);
      try {
        save(queue);
      } catch (full) { // localStorage holds a few MB: keep the tap, without its photo
        delete entry.photo;
        save(load().concat([entry]));
        say(root.dataset.msgNoRoom, true);
      }
      showQueued();
      return flush();
    });
  });

  window.addEventListener("online", flush);
  setInterval(flush, RETRY_MS);
  setInterval(function () { if (!load().length) refresh(); }, REFRESH_MS);
  showQueued();
  flush();
})();
