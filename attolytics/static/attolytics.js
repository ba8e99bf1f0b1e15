/* Attolytics browser client, served by the service at /attolytics.js. No dependencies.
 *
 *   <script src="https://collector.example.com/attolytics.js" data-app="mygame" data-key="KEY"></script>
 *   <script>attolytics.track("game_events", {timestamp: Math.floor(Date.now() / 1000), event_type: "start"});</script>
 *
 * Events wait in a queue and go out in batches: every `interval` ms (data-interval, default
 * 5000), at once when a full request's worth is waiting, and when the page is hidden or left
 * (by navigator.sendBeacon, else fetch with keepalive). A 503 is retried after its Retry-After;
 * a failed connection after a growing pause. No request is larger than the service's body limit.
 */
(function (global) {
  "use strict";

  // Filled in by the service as it serves this file: its max_body_bytes.
  var MAX_BODY_BYTES = __MAX_BODY_BYTES__;
  // Browsers allow 64 KiB of beacon and keepalive bodies in flight at once; stay under it.
  var KEEPALIVE_BYTES = 60000;
  var DEFAULT_RETRY_SECONDS = 5;
  var MAX_PAUSE_MS = 60000;
  var encoder = new TextEncoder();

  function utf8Bytes(text) {
    return encoder.encode(text).length;
  }

  function reportToConsole(error) {
    if (global.console) {
      global.console.error("attolytics: " + error.message, error);
    }
  }

  // An error for the page's onError: what happened, and the events it concerns.
  function clientError(message, status, events, answer) {
    var error = new Error(message);
    error.status = status;
    error.events = events;
    error.answer = answer;
    return error;
  }

  function Client(options) {
    if (!options || !options.app || !options.key) {
      throw new Error("attolytics: a client needs `app` and `key`");
    }
    var base = String(options.url || DEFAULT_BASE).replace(/\/+$/, "");
    this.endpoint = base + "/apps/" + encodeURIComponent(options.app) + "/events";
    this.prefix = '{"secret_key":' + JSON.stringify(String(options.key)) + ',"events":[';
    this.emptyBytes = utf8Bytes(this.prefix) + 2; // the body with no events: prefix and "]}"
    this.interval = options.interval == null ? 5000 : Number(options.interval);
    this.maxQueue = options.maxQueue || 10000;
    this.onError = options.onError || reportToConsole;
    this.queue = []; // {text, bytes, event}, oldest first
    this.queuedBytes = 0;
    this.sending = false;
    this.retryAt = 0;
    this.failures = 0;
    this.timer = null;
    var self = this;
    var hidden = function () {
      if (global.document.visibilityState === "hidden") {
        self.sendBeforeLeaving();
      }
    };
    global.document.addEventListener("visibilitychange", hidden);
    global.addEventListener("pagehide", function () { self.sendBeforeLeaving(); });
  }

  // Queue one event for the table (event type) `type`; false, and onError, if it cannot be sent.
  Client.prototype.track = function (type, properties) {
    if (typeof type !== "string" || !type) {
      throw new TypeError("attolytics.track: the first argument names the event type (a table)");
    }
    var event = {};
    for (var key in properties) {
      if (Object.prototype.hasOwnProperty.call(properties, key)) {
        event[key] = properties[key];
      }
    }
    event._t = type;
    var text = JSON.stringify(event);
    var bytes = utf8Bytes(text);
    if (this.emptyBytes + bytes > MAX_BODY_BYTES) {
      this.onError(clientError("event is " + bytes + " bytes, more than the service's limit of " +
                               MAX_BODY_BYTES + " bytes a request; not sent", 413, [event]));
      return false;
    }
    if (this.queue.length >= this.maxQueue) {
      this.onError(clientError(this.maxQueue + " events are waiting to be sent; event dropped",
                               0, [event]));
      return false;
    }
    this.queue.push({text: text, bytes: bytes, event: event});
    this.queuedBytes += bytes + 1;
    this.schedule(this.emptyBytes + this.queuedBytes > MAX_BODY_BYTES ? 0 : this.interval);
    return true;
  };

  // Send what is queued now, unless a request is in flight or the service asked to wait.
  Client.prototype.flush = function () {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.sending || !this.queue.length) {
      return;
    }
    var wait = this.retryAt - Date.now();
    if (wait > 0) {
      this.schedule(wait);
      return;
    }
    var batch = this.take(MAX_BODY_BYTES);
    var self = this;
    this.sending = true;
    fetch(this.endpoint, {
      method: "POST",
      // application/json makes the browser ask first (a preflight), so a page whose origin the
      // app does not allow stores nothing, rather than storing events it cannot see acknowledged.
      headers: {"Content-Type": "application/json"},
      body: batch.body,
      keepalive: batch.bytes <= KEEPALIVE_BYTES,
      credentials: "omit",
    }).then(function (response) {
      return response.text().then(function (text) {
        self.answered(batch, response.status, response.headers.get("Retry-After"), text);
      });
    }).catch(function () {
      self.connectionFailed(batch);
    });
  };

  // Hand everything queued to the browser, which sends it even after the page is gone.
  Client.prototype.sendBeforeLeaving = function () {
    clearTimeout(this.timer);
    this.timer = null;
    while (this.queue.length) {
      var batch = this.take(Math.min(MAX_BODY_BYTES, KEEPALIVE_BYTES));
      if (!batch.items.length) {
        break; // an event too large for a beacon: sent by flush() if the page comes back
      }
      if (!this.beacon(batch)) {
        this.putBack(batch);
        break;
      }
    }
    if (this.queue.length) {
      this.schedule(this.interval);
    }
  };

  Client.prototype.beacon = function (batch) {
    // text/plain: the one type a beacon may carry to another origin without a preflight.
    if (global.navigator.sendBeacon && global.navigator.sendBeacon(this.endpoint, batch.body)) {
      return true;
    }
    var self = this;
    try {
      fetch(this.endpoint, {
        method: "POST", body: batch.body, keepalive: true, mode: "no-cors", credentials: "omit",
        headers: {"Content-Type": "text/plain;charset=UTF-8"},
      }).catch(function () {
        // Not sent (too much in flight, or no connection): still queued if the page lives on.
        self.putBack(batch);
        self.schedule(self.interval);
      });
      return true;
    } catch (e) {
      return false;
    }
  };

  // Take the oldest events that fit in `limit` bytes of body, and the body that carries them.
  Client.prototype.take = function (limit) {
    var bytes = this.emptyBytes;
    var count = 0;
    while (count < this.queue.length) {
      var added = this.queue[count].bytes + (count ? 1 : 0);
      if (bytes + added > limit) {
        break;
      }
      bytes += added;
      count += 1;
    }
    var items = this.queue.splice(0, count);
    this.queuedBytes -= bytes - this.emptyBytes + (count ? 1 : 0);
    var texts = items.map(function (item) { return item.text; });
    return {items: items, bytes: bytes, body: this.prefix + texts.join(",") + "]}"};
  };

  Client.prototype.putBack = function (batch) {
    this.queue = batch.items.concat(this.queue);
    for (var i = 0; i < batch.items.length; i++) {
      this.queuedBytes += batch.items[i].bytes + 1;
    }
  };

  Client.prototype.answered = function (batch, status, retryAfter, text) {
    this.sending = false;
    var answer = null;
    try {
      answer = JSON.parse(text);
    } catch (e) {
      answer = {error: text};
    }
    var events = batch.items.map(function (item) { return item.event; });
    if (status === 200) {
      this.failures = 0;
    } else if (status === 503) {
      this.putBack(batch);
      var seconds = parseInt(retryAfter, 10);
      this.retryAt = Date.now() + 1000 * (seconds >= 0 ? seconds : DEFAULT_RETRY_SECONDS);
    } else if (status >= 500 || status === 408) {
      this.connectionFailed(batch);
      return;
    } else if (answer && typeof answer.event === "number" && batch.items[answer.event]) {
      // One event was refused, so none of the request was stored: drop that one, resend the rest.
      var refused = batch.items.splice(answer.event, 1)[0];
      this.onError(clientError(answer.error + (answer.field ? " (field " + answer.field + ")" : ""),
                               status, [refused.event], answer));
      this.putBack(batch);
    } else {
      this.onError(clientError((answer && answer.error) || "refused with status " + status,
                               status, events, answer));
    }
    this.schedule(this.emptyBytes + this.queuedBytes > MAX_BODY_BYTES ? 0 : this.interval);
  };

  Client.prototype.connectionFailed = function (batch) {
    this.sending = false;
    this.putBack(batch);
    this.failures += 1;
    this.retryAt = Date.now() + Math.min(MAX_PAUSE_MS, 1000 * Math.pow(2, this.failures - 1));
    this.schedule(this.interval);
  };

  Client.prototype.schedule = function (delay) {
    if (!this.queue.length || this.sending) {
      return;
    }
    var wait = Math.max(delay, this.retryAt - Date.now());
    if (this.timer !== null && delay > 0) {
      return; // already due no later than the interval
    }
    clearTimeout(this.timer);
    var self = this;
    this.timer = setTimeout(function () { self.flush(); }, wait);
  };

  // The service this file came from, for clients that do not name one.
  var script = global.document.currentScript;
  var DEFAULT_BASE = script && script.src ? new URL(".", script.src).href : "";
  var defaultClient = null;
  if (script && script.dataset.app && script.dataset.key) {
    defaultClient = new Client({
      app: script.dataset.app,
      key: script.dataset.key,
      url: script.dataset.url,
      interval: script.dataset.interval,
    });
  }

  function requireDefault() {
    if (!defaultClient) {
      throw new Error("attolytics: give the script tag data-app and data-key, " +
                      "or make a client with attolytics.client({app, key})");
    }
    return defaultClient;
  }

  global.attolytics = {
    client: function (options) { return new Client(options); },
    track: function (type, properties) { return requireDefault().track(type, properties); },
    flush: function () { requireDefault().flush(); },
  };
})(window);
