/* Attolytics browser client, served by the service at /attolytics.js. No dependencies.
 *
 *   <script src="https://collector.example.com/attolytics.js" data-app="mygame" data-key="KEY"></script>
 *   <script>attolytics.track("game_events", {timestamp: Math.floor(Date.now() / 1000), event_type: "start"});</script>
 *
 * Events wait in a queue and go out in batches: every `interval` ms (data-interval, default
 * 5000), at once when a full request's worth is waiting, and when the page is hidden (fetch with
 * keepalive) or left (navigator.sendBeacon, else fetch with keepalive). A 503 or a 429 (the
 * app's rate limit) is sent again, unchanged, after its Retry-After; a failed connection after a
 * growing pause. No request is larger than the service's body limit or carries more events than
 * its max_events_per_request (or than the app's rate limit takes at once), and a batch the
 * service refuses for one event is sent again without it. An event of a type whose table has a
 * uuid `unique` column gets a new UUIDv7 there when tracked (unless the page gave one), so that a
 * batch sent again is stored once.
 *
 * A page may ask the client to respect the visitor's opt-out, with data-respect-dnt on the script
 * tag or `respectDoNotTrack: true` in attolytics.client({...}): then, in a browser that sends
 * Global Privacy Control or Do Not Track, nothing is sent, queued or kept in localStorage, and
 * track returns false. Without the page asking, those preferences change nothing.
 */
(function (global) {
  "use strict";

  // Filled in by the service as it serves this file: its max_body_bytes and
  // max_events_per_request; the apps whose rate limit takes fewer events at once (its burst):
  // {app: events}; and for each app the event types whose table has a uuid id column:
  // {app: {event type: column}}; and the event types of each app that web pages may post to:
  // {app: [event type, ...]} (an app that allows no page is not named).
  var MAX_BODY_BYTES = __MAX_BODY_BYTES__;
  var MAX_EVENTS_PER_REQUEST = __MAX_EVENTS_PER_REQUEST__;
  var EVENTS_AT_ONCE = __EVENTS_AT_ONCE__;
  var EVENT_IDS = __EVENT_IDS__;
  var EVENT_TYPES = __EVENT_TYPES__;
  // Browsers allow 64 KiB of beacon and keepalive bodies in flight at once; stay under it.
  var KEEPALIVE_BYTES = 60000;
  // A batch this size survives the page being closed while it is sent (keepalive).
  var BATCH_BYTES = Math.min(MAX_BODY_BYTES, KEEPALIVE_BYTES);
  // 5xx answers other than 503 in a row for one batch before it is split as a refusal.
  var SERVER_ERRORS_BEFORE_SPLIT = 3;
  // While the page is hidden, its timers are slowed; events are gathered this long at most.
  var HIDDEN_BATCH_MS = 1000;
  var DEFAULT_INTERVAL_MS = 5000;
  var DEFAULT_MAX_QUEUE = 10000;
  var REQUEST_TIMEOUT_MS = 30000;
  var DEFAULT_RETRY_MS = 5000;
  var MIN_RETRY_MS = 1000;
  var MAX_RETRY_MS = 600000;
  var MAX_PAUSE_MS = 60000;
  var FAILURES_BEFORE_REPORT = 3;
  // Events a page could not send as it was left wait in localStorage, up to this many bytes.
  var MAX_STORED_BYTES = 1000000;
  var encoder = new TextEncoder();

  function utf8Bytes(text) {
    return encoder.encode(text).length;
  }

  function now() {
    return global.performance.now();
  }

  // An error for the page's onError: what happened, and the events it concerns.
  function clientError(message, status, events, extra) {
    var error = new Error(message);
    error.status = status;
    error.events = events;
    for (var key in extra) {
      error[key] = extra[key];
    }
    return error;
  }

  function reportToConsole(error) {
    if (global.console) {
      var message = /^attolytics/.test(error.message) ? error.message : "attolytics: " + error.message;
      global.console.error(message, error);
    }
  }

  // JSON.stringify would turn these into null; refuse them instead of altering the event.
  function refuseNonFinite(key, value) {
    if (typeof value === "number" && !isFinite(value)) {
      throw new TypeError((key ? "property " + key : "a value") + " is " + value +
                          ", which JSON cannot carry");
    }
    return value;
  }

  // Milliseconds a 503 or 429 asks the client to wait: Retry-After in seconds or as an HTTP date.
  function retryDelay(header) {
    var ms = DEFAULT_RETRY_MS;
    if (header && /^\s*\d+\s*$/.test(header)) {
      ms = 1000 * parseInt(header, 10);
    } else if (header && !isNaN(Date.parse(header))) {
      ms = Date.parse(header) - Date.now();
    }
    return Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, ms));
  }

  // The milliseconds and counter of the last id made: ids made in the same millisecond count up
  // in the 12 bits after the version, so the ids of one page increase in the order tracked.
  var lastIdMs = -Infinity;
  var idCounter = 0;

  // A new UUID version 7 (RFC 9562), lower-case: 48 bits of Unix milliseconds, big-endian (time
  // order keeps the table's index compact), the version, a 12-bit counter, the variant, and 62
  // random bits. Undefined without crypto.getRandomValues: an id from Math.random could repeat,
  // and a repeated id drops an event as a duplicate, so the event goes without one instead.
  function uuid7() {
    var crypto = global.crypto;
    if (!crypto || typeof crypto.getRandomValues !== "function") {
      return undefined;
    }
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    var ms = Date.now();
    if (ms > lastIdMs) {
      lastIdMs = ms;
      // A random start below the half leaves room to count up within the millisecond.
      idCounter = ((bytes[6] & 0x07) << 8) | bytes[7];
    } else if (idCounter < 0xfff) {
      idCounter += 1; // the same millisecond, or the clock went back: go on from the last id
    } else {
      lastIdMs += 1; // the counter is used up: borrow the next millisecond (RFC 9562, 6.2)
      idCounter = 0;
    }
    var hex = ("00000000000" + lastIdMs.toString(16)).slice(-12);
    bytes[6] = 0x70 | (idCounter >> 8); // version 7
    bytes[7] = idCounter & 0xff;
    bytes[8] = 0x80 | (bytes[8] & 0x3f); // variant 10
    for (var i = 6; i < 16; i++) {
      hex += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    }
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" +
           hex.slice(16, 20) + "-" + hex.slice(20);
  }

  // The column the service takes as the event's id for this app and event type, if any.
  function idColumn(app, type) {
    var own = Object.prototype.hasOwnProperty;
    var types = own.call(EVENT_IDS, app) ? EVENT_IDS[app] : null;
    var column = types && own.call(types, type) ? types[type] : null;
    return typeof column === "string" ? column : null;
  }

  function numberOption(value, fallback, low, high, name) {
    if (value == null || value === "") {
      return fallback;
    }
    var number = Number(value);
    if (!(number >= low && number <= high)) {
      throw new Error("attolytics: " + name + " must be a number from " + low + " to " + high);
    }
    return number;
  }

  // Whether the visitor asks not to be tracked: Global Privacy Control, or Do Not Track in any
  // of the places browsers have put it.
  function visitorOptedOut() {
    var nav = global.navigator || {};
    return nav.globalPrivacyControl === true || nav.doNotTrack === "1" || nav.doNotTrack === "yes" ||
           global.doNotTrack === "1" || nav.msDoNotTrack === "1";
  }

  function Client(options) {
    if (!options || !options.app || !options.key) {
      throw new Error("attolytics: a client needs `app` and `key`");
    }
    var base = options.url || DEFAULT_BASE;
    if (!base) {
      throw new Error("attolytics: cannot tell where the service is; give `url` (or data-url)");
    }
    this.app = String(options.app);
    // The most events one request of this app may carry: the service's cap, or the app's burst.
    this.maxEvents = Object.prototype.hasOwnProperty.call(EVENTS_AT_ONCE, this.app) ?
                     EVENTS_AT_ONCE[this.app] : MAX_EVENTS_PER_REQUEST;
    // The app's event types, as the service that served this file knows them; null for an app it
    // does not name (then the service the events go to decides).
    this.types = Object.prototype.hasOwnProperty.call(EVENT_TYPES, this.app) ? EVENT_TYPES[this.app] : null;
    this.endpoint = String(base).replace(/\/+$/, "") + "/apps/" + encodeURIComponent(options.app) +
                    "/events";
    this.prefix = '{"secret_key":' + JSON.stringify(String(options.key)) + ',"events":[';
    this.emptyBytes = utf8Bytes(this.prefix) + 2; // the body with no events: prefix and "]}"
    this.interval = numberOption(options.interval, DEFAULT_INTERVAL_MS, 0, 86400000, "interval");
    this.maxQueue = numberOption(options.maxQueue, DEFAULT_MAX_QUEUE, 1, 1e7, "maxQueue");
    this.onError = options.onError || reportToConsole;
    // The page asked to respect the visitor's opt-out, and the visitor opted out: this client
    // sends nothing, and neither reads nor writes localStorage.
    this.optedOut = options.respectDoNotTrack === true && visitorOptedOut();
    this.queue = []; // {text, bytes, event} not yet in a request, oldest first
    this.queuedBytes = 0; // their bytes, each with the comma that separates it
    this.retries = []; // batches to send again as they were, first first
    this.inFlight = 0;
    this.keepaliveBytes = 0; // bodies of keepalive requests in flight
    this.retryAt = 0;
    this.failures = 0;
    this.timer = null;
    this.due = 0;
    this.flushWhenAnswered = false;
    this.leaving = false;
    this.soon = false;
    // This page's own key in localStorage (other pages of the origin have theirs).
    this.storagePrefix = "attolytics:" + this.endpoint + ":";
    this.storageKey = this.storagePrefix + Math.random().toString(36).slice(2);
    this.stored = []; // the items this page last wrote there
    this.unkept = []; // batches in flight without keepalive: the browser drops them with the page
    if (this.optedOut) {
      return;
    }
    var self = this;
    global.document.addEventListener("visibilitychange", function () {
      if (global.document.visibilityState === "hidden") {
        self.sendWhileHidden();
      }
    });
    global.addEventListener("pagehide", function () { self.sendBeforeLeaving(); });
    global.addEventListener("pageshow", function (event) {
      if (event.persisted) {
        self.leaving = false; // back from the back/forward cache: send what stayed behind
        self.forget();
        self.schedule(0);
      }
    });
    this.restore();
  }

  // Queue one event for the event type (a table) `type`; false, and onError, if it cannot be sent
  // (an event type the app does not have among them); false alone if the visitor opted out and the
  // page asked to respect that (a choice, not an error).
  Client.prototype.track = function (type, properties) {
    if (typeof type !== "string" || !type) {
      throw new TypeError("attolytics.track: the first argument names the event type (a table)");
    }
    if (this.optedOut) {
      return false;
    }
    var event = {};
    for (var key in properties) {
      if (Object.prototype.hasOwnProperty.call(properties, key)) {
        event[key] = properties[key];
      }
    }
    if (this.types !== null && this.types.indexOf(type) < 0) {
      event._t = type;
      this.report(clientError("app " + JSON.stringify(this.app) + " has no event type " +
                              JSON.stringify(type) + "; event not sent", 404, [event]));
      return false;
    }
    // The id is given once, here: every send of this event (again after a 503, in a smaller
    // batch, from localStorage by the next page) carries it, and the service stores it once.
    var column = idColumn(this.app, type);
    if (column !== null && event[column] === undefined) {
      var id = uuid7();
      if (id !== undefined) {
        event[column] = id;
      }
    }
    event._t = type;
    var text;
    try {
      text = JSON.stringify(event, refuseNonFinite);
    } catch (e) {
      this.report(clientError("event cannot be sent as JSON: " + e.message, 400, [event]));
      return false;
    }
    if (typeof text !== "string" || text.charAt(0) !== "{") {
      this.report(clientError("event is not a JSON object once serialized", 400, [event]));
      return false;
    }
    var bytes = utf8Bytes(text);
    if (this.emptyBytes + bytes > MAX_BODY_BYTES) {
      this.report(clientError("event is " + bytes + " bytes, more than the service's limit of " +
                              MAX_BODY_BYTES + " bytes a request; not sent", 413, [event]));
      return false;
    }
    if (this.queue.length >= this.maxQueue) {
      this.report(clientError(this.maxQueue + " events are waiting to be sent; event dropped",
                              0, [event]));
      return false;
    }
    this.queue.push({text: text, bytes: bytes, event: event});
    this.queuedBytes += bytes + 1;
    if (this.leaving) {
      this.sendSoon(); // the page is going: no timer may run again
    } else {
      this.schedule(this.fullBatchWaiting() ? 0 : this.batchDelay());
    }
    return true;
  };

  // Send what is waiting now: one request at a time, unless the service asked to wait.
  Client.prototype.flush = function () {
    this.clearTimer();
    if (this.leaving) {
      return; // what waits is kept in storage; sending it too could send it twice
    }
    if (this.inFlight) {
      this.flushWhenAnswered = true;
      return;
    }
    if (now() < this.retryAt) {
      this.schedule(0);
      return;
    }
    // A batch to send again goes as it was; new ones are kept small enough to survive the
    // page being closed, unless one event alone is larger.
    var batch = this.retries.length ? this.retries.shift()
      : this.nextBatch(BATCH_BYTES) || this.nextBatch(MAX_BODY_BYTES);
    if (batch) {
      this.send(batch);
    }
  };

  // The page is hidden and may never run again: send everything the keepalive allowance takes.
  Client.prototype.sendWhileHidden = function () {
    this.clearTimer();
    if (this.leaving) {
      return; // sendBeforeLeaving has sent or kept everything
    }
    if (now() < this.retryAt) {
      this.schedule(0); // the service asked to wait; if the page is left meanwhile, the events are kept
      return;
    }
    var batch;
    while ((batch = this.nextBatch(Math.min(MAX_BODY_BYTES, KEEPALIVE_BYTES - this.keepaliveBytes)))) {
      this.send(batch);
    }
    this.schedule(this.interval);
  };

  // The page is being left: hand what is waiting to the browser, which sends it after the page is gone.
  Client.prototype.sendBeforeLeaving = function () {
    this.leaving = true;
    this.clearTimer();
    // While the service asks to wait, or cannot be reached, a beacon would be lost: keep all.
    if (now() >= this.retryAt) {
      var batch;
      while ((batch = this.nextBatch(Math.min(MAX_BODY_BYTES, KEEPALIVE_BYTES - this.keepaliveBytes)))) {
        this.beacon(batch);
      }
    }
    this.store(); // what stays behind, for the next page of this origin to send
    this.schedule(this.interval); // or for this one, if it is kept and comes back
  };

  function localStore() {
    try {
      return global.localStorage || null;
    } catch (e) {
      return null; // storage disabled
    }
  }

  // Write the events still waiting under this page's key (replacing what it wrote before).
  // Those of a request in flight that the browser drops with the page are written too: whether
  // it arrived is unknown, so they may be stored twice (at-least-once).
  Client.prototype.store = function () {
    var storage = localStore();
    var waiting = [];
    this.retries.concat(this.unkept).forEach(function (batch) { waiting = waiting.concat(batch.items); });
    waiting = waiting.concat(this.queue);
    var written = [];
    var bytes = 0;
    for (var i = 0; i < waiting.length && bytes + waiting[i].bytes <= MAX_STORED_BYTES; i++) {
      written.push(waiting[i]);
      bytes += waiting[i].bytes;
    }
    this.stored = [];
    try {
      if (written.length) {
        storage.setItem(this.storageKey, JSON.stringify(written.map(function (item) { return item.text; })));
        this.stored = written;
      } else if (storage) {
        storage.removeItem(this.storageKey);
      }
    } catch (e) {
      written = []; // no storage, or full
    }
    if (written.length < waiting.length) {
      this.report(clientError((waiting.length - written.length) + " events could not be kept in " +
                              "localStorage as the page was left; they are sent only if it comes back",
                              0, waiting.slice(written.length).map(function (item) { return item.event; }),
                              {retrying: true}));
    }
  };

  // The page is back from the back/forward cache with its events in memory: its stored copy
  // goes, or, if another page of the site took that copy meanwhile, the events it holds go.
  Client.prototype.forget = function () {
    var stored = this.stored;
    this.stored = [];
    var taken = false;
    try {
      var storage = localStore();
      taken = stored.length > 0 && storage.getItem(this.storageKey) === null;
      storage.removeItem(this.storageKey);
    } catch (e) {
      taken = stored.length > 0; // cannot tell: sending later beats sending twice
    }
    if (!taken) {
      return;
    }
    var gone = new Set(stored);
    var kept = function (item) { return !gone.has(item); };
    this.queue = this.queue.filter(kept);
    this.queuedBytes = this.queue.reduce(function (total, item) { return total + item.bytes + 1; }, 0);
    var self = this;
    this.retries = this.retries
      .map(function (batch) { return batch.items.filter(kept); })
      .filter(function (items) { return items.length; })
      .map(function (items) { return batchOf(self.prefix, self.emptyBytes, items); });
  };

  // Queue what earlier pages of this origin left for this endpoint, and remove it from storage.
  // A key that cannot be read or removed is left alone; one that holds no events is removed.
  Client.prototype.restore = function () {
    var storage = localStore();
    var keys = [];
    try {
      for (var i = 0; i < storage.length; i++) {
        var key = storage.key(i);
        if (key && key.indexOf(this.storagePrefix) === 0) {
          keys.push(key);
        }
      }
    } catch (e) {
      return; // no storage
    }
    var restored = [];
    for (var k = 0; k < keys.length; k++) {
      var texts = null;
      try {
        texts = JSON.parse(storage.getItem(keys[k]));
      } catch (e) {
        texts = null; // not ours
      }
      try {
        storage.removeItem(keys[k]);
      } catch (e) {
        continue; // taking what cannot be removed would send it again on every page
      }
      if (Array.isArray(texts)) {
        restored = restored.concat(texts);
      }
    }
    for (var j = 0; j < restored.length; j++) {
      var text = restored[j];
      var ours = typeof text === "string" && text.charAt(0) === "{";
      var bytes = ours ? utf8Bytes(text) : Infinity;
      if (this.emptyBytes + bytes <= MAX_BODY_BYTES) { // else not ours, or the limit shrank
        try {
          this.queue.push({text: text, bytes: bytes, event: JSON.parse(text)});
          this.queuedBytes += bytes + 1;
        } catch (e) {
          // not an event: drop it
        }
      }
    }
    this.schedule(0);
  };

  // Events tracked while the page is being left go out at the end of the current task.
  Client.prototype.sendSoon = function () {
    if (this.soon) {
      return;
    }
    this.soon = true;
    var self = this;
    global.queueMicrotask(function () {
      self.soon = false;
      if (self.leaving) {
        self.sendBeforeLeaving();
      }
    });
  };

  Client.prototype.batchDelay = function () {
    var hidden = global.document.visibilityState === "hidden";
    return hidden ? Math.min(this.interval, HIDDEN_BATCH_MS) : this.interval;
  };

  // POST a batch so that its answer can be read: application/json makes the browser ask first
  // (a preflight), so a page the app does not allow sends nothing it cannot see answered.
  Client.prototype.send = function (batch) {
    var self = this;
    var keepalive = batch.bytes <= KEEPALIVE_BYTES - this.keepaliveBytes;
    var controller = new global.AbortController();
    var timeout = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    this.inFlight += 1;
    this.keepaliveBytes += keepalive ? batch.bytes : 0;
    if (!keepalive) {
      this.unkept.push(batch);
    }
    var settled = false;
    var settle = function () {
      clearTimeout(timeout);
      if (settled) {
        return false;
      }
      settled = true;
      self.inFlight -= 1;
      self.keepaliveBytes -= keepalive ? batch.bytes : 0;
      if (!keepalive) {
        self.unkept.splice(self.unkept.indexOf(batch), 1);
      }
      return true;
    };
    var failed = function () {
      if (settle()) {
        self.connectionFailed(batch);
      }
    };
    try {
      global.fetch(this.endpoint, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: batch.body,
        keepalive: keepalive,
        credentials: "omit",
        signal: controller.signal,
      }).then(function (response) {
        // The status decides; a body that cannot be read does not undo a 200.
        return response.text().catch(function () { return null; }).then(function (text) {
          if (settle()) {
            self.answered(batch, response.status, response.headers.get("Retry-After"), text);
          }
        });
      }, failed);
    } catch (e) {
      failed();
    }
  };

  // Send by beacon, else by fetch with keepalive; no answer can be read on this path.
  Client.prototype.beacon = function (batch) {
    this.keepaliveBytes += batch.bytes; // until the page is gone, or briefly if it stays
    var self = this;
    setTimeout(function () { self.keepaliveBytes -= batch.bytes; }, 1000);
    try {
      // text/plain: the one type a beacon may carry to another origin without a preflight.
      if (global.navigator.sendBeacon && global.navigator.sendBeacon(this.endpoint, batch.body)) {
        return;
      }
    } catch (e) {
      // fall back to fetch
    }
    var keep = function () {
      // Not sent (too much in flight, or no connection): queued again, and kept if the page goes.
      self.retries.push(batch);
      if (self.leaving) {
        self.store();
      }
      self.schedule(self.interval);
    };
    try {
      global.fetch(this.endpoint, {
        method: "POST", body: batch.body, keepalive: true, mode: "no-cors", credentials: "omit",
        headers: {"Content-Type": "text/plain;charset=UTF-8"},
      }).catch(keep);
    } catch (e) {
      keep();
    }
  };

  // The next request's batch, at most `limit` bytes and this.maxEvents events: a batch
  // to send again as it was, else the oldest queued events that fit (an event too large for
  // `limit` waits for a larger one).
  Client.prototype.nextBatch = function (limit) {
    if (this.retries.length && this.retries[0].bytes <= limit) {
      return this.retries.shift();
    }
    while (this.retries.length) {
      // Too large for a beacon: its events go back to the queue, to be sent in smaller parts.
      var again = this.retries.pop().items;
      this.queue = again.concat(this.queue);
      for (var j = 0; j < again.length; j++) {
        this.queuedBytes += again[j].bytes + 1;
      }
    }
    var bytes = this.emptyBytes;
    var taken = [];
    var kept = [];
    for (var i = 0; i < this.queue.length; i++) {
      var item = this.queue[i];
      var added = item.bytes + (taken.length ? 1 : 0);
      if (taken.length >= this.maxEvents) {
        kept = kept.concat(this.queue.slice(i)); // a full batch: the rest waits for the next
        break;
      } else if (bytes + added <= limit) {
        bytes += added;
        taken.push(item);
      } else if (this.emptyBytes + item.bytes > limit) {
        kept.push(item);
      } else {
        kept = kept.concat(this.queue.slice(i));
        break;
      }
    }
    if (!taken.length) {
      return null;
    }
    this.queue = kept;
    this.queuedBytes -= bytes - this.emptyBytes + 1;
    return batchOf(this.prefix, this.emptyBytes, taken);
  };

  function batchOf(prefix, emptyBytes, items) {
    var bytes = emptyBytes + items.length - 1;
    var texts = [];
    for (var i = 0; i < items.length; i++) {
      bytes += items[i].bytes;
      texts.push(items[i].text);
    }
    return {items: items, bytes: bytes, body: prefix + texts.join(",") + "]}", serverErrors: 0};
  }

  Client.prototype.answered = function (batch, status, retryAfter, text) {
    var answer = null;
    try {
      answer = JSON.parse(text);
    } catch (e) {
      answer = null;
    }
    var events = batch.items.map(function (item) { return item.event; });
    if (status === 503 || (status < 500 && status !== 408)) {
      this.failures = 0; // the service answered
    }
    var error = answer && typeof answer.error === "string" ? answer.error : "status " + status;
    var index = answer && typeof answer.event === "number" ? answer.event : -1;
    if (status === 200) {
      // Events whose id was stored already (an earlier send arrived) count as stored.
      var kept = answer ? answer.inserted + (answer.duplicates || 0) : batch.items.length;
      if (kept !== batch.items.length) {
        this.report(clientError("the service answered 200 but stored " + kept + " of " +
                                batch.items.length + " events", 200, events, {answer: answer}));
      }
    } else if (status === 503 || status === 429) {
      // Busy, or over the app's rate limit (429 stores nothing): the same batch, after Retry-After.
      this.retries.unshift(batch);
      this.retryAt = Math.max(this.retryAt, now() + retryDelay(retryAfter));
    } else if (status === 408 || (status >= 500 && ++batch.serverErrors < SERVER_ERRORS_BEFORE_SPLIT)) {
      this.connectionFailed(batch);
      return;
    } else if (index >= 0 && index < batch.items.length && status !== 401 && status !== 403) {
      // One event was refused, so nothing of the request was stored: send the rest without it.
      var rest = batch.items.slice();
      var refused = rest.splice(index, 1)[0];
      this.report(clientError(error + (answer.field ? " (field " + answer.field + ")" : ""),
                              status, [refused.event], {answer: answer}));
      if (rest.length) {
        this.retries.unshift(batchOf(this.prefix, this.emptyBytes, rest));
      }
    } else if ((status === 400 || status === 409 || status === 413 || status >= 500) &&
               batch.items.length > 1) {
      // Refused without naming an event (a constraint of the table, a duplicate, a proxy's
      // limit, a service that fails on this batch every time): send each half on its own until
      // the event at fault is alone.
      var half = Math.ceil(batch.items.length / 2);
      this.retries.unshift(batchOf(this.prefix, this.emptyBytes, batch.items.slice(0, half)),
                           batchOf(this.prefix, this.emptyBytes, batch.items.slice(half)));
    } else {
      this.report(clientError(error, status, events, {answer: answer}));
    }
    this.afterAnswer();
  };

  Client.prototype.connectionFailed = function (batch) {
    this.retries.unshift(batch);
    this.failures += 1;
    // Never sooner than a 503 asked: requests in flight together may fail after it.
    this.retryAt = Math.max(this.retryAt, now() + Math.min(MAX_PAUSE_MS, 1000 * Math.pow(2, this.failures - 1)));
    if (this.failures === FAILURES_BEFORE_REPORT) {
      this.report(clientError("cannot reach " + this.endpoint + " (offline, or the app does not " +
                              "allow this page's origin); the events wait and are sent again",
                              0, batch.items.map(function (item) { return item.event; }),
                              {retrying: true}));
    }
    this.afterAnswer();
  };

  Client.prototype.afterAnswer = function () {
    var promptly = this.flushWhenAnswered || this.retries.length || this.fullBatchWaiting();
    this.flushWhenAnswered = false;
    if (this.leaving) {
      this.sendSoon();
    } else {
      this.schedule(promptly ? 0 : this.batchDelay());
    }
  };

  Client.prototype.fullBatchWaiting = function () {
    return this.emptyBytes + this.queuedBytes > BATCH_BYTES || this.queue.length >= this.maxEvents;
  };

  // Call flush() in `delay` ms (or when the service said it may be asked again, if later),
  // unless a request is in flight (its answer schedules) or a timer is already due sooner.
  Client.prototype.schedule = function (delay) {
    if ((!this.queue.length && !this.retries.length) || this.inFlight) {
      return;
    }
    var due = Math.max(now() + delay, this.retryAt);
    if (this.timer !== null && this.due <= due) {
      return;
    }
    this.clearTimer();
    this.due = due;
    var self = this;
    this.timer = setTimeout(function () {
      self.timer = null;
      self.flush();
    }, Math.max(0, due - now()));
  };

  Client.prototype.clearTimer = function () {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  };

  Client.prototype.report = function (error) {
    try {
      this.onError(error);
    } catch (e) {
      reportToConsole(e); // the page's handler failed; the client goes on
    }
  };

  // The service this file came from, for clients that do not name one.
  var script = global.document.currentScript;
  var DEFAULT_BASE = script && script.src ? new URL(".", script.src).href : "";
  var defaultClient = null;
  var setupError = null;
  if (script && script.dataset.app && script.dataset.key) {
    try {
      defaultClient = new Client({
        app: script.dataset.app,
        key: script.dataset.key,
        url: script.dataset.url,
        interval: script.dataset.interval,
        // data-respect-dnt, with no value or any but "false"
        respectDoNotTrack: script.dataset.respectDnt !== undefined && script.dataset.respectDnt !== "false",
      });
    } catch (e) {
      setupError = e; // a mistake in the script tag must not break the page's own code
      reportToConsole(e);
    }
  }

  // The client the script tag configured; null (and the reason on the console) without one.
  function configured() {
    if (!defaultClient) {
      reportToConsole(setupError || new Error(
        "give the script tag data-app and data-key, or make a client with attolytics.client({app, key})"));
    }
    return defaultClient;
  }

  global.attolytics = {
    client: function (options) { return new Client(options); },
    track: function (type, properties) {
      var client = configured();
      return client ? client.track(type, properties) : false;
    },
    flush: function () {
      var client = configured();
      if (client) {
        client.flush();
      }
    },
  };
})(window);
