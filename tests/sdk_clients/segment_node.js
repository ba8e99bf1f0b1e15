// Sends Segment calls with @segment/analytics-node (from tests/js/node_modules), then flushes and
// exits, writing one JSON line on standard output: the status of each HTTP answer it got and the
// errors it reported. Its one argument is a JSON object:
//   {"host": "http://127.0.0.1:PORT", "writeKey": "...", "settings": {...more Analytics settings},
//    "calls": [["track", {"userId": "u1", "event": "Level Completed", ...}], ...]}
// Run by tests/test_segment_sdks.py with Debian's node.
'use strict'

const path = require('path')
const { Analytics } = require(path.join(__dirname, '..', 'js', 'node_modules', '@segment', 'analytics-node'))

async function main () {
  const plan = JSON.parse(process.argv[2])
  const analytics = new Analytics({
    writeKey: plan.writeKey,
    host: plan.host,
    flushInterval: 200,
    maxRetries: 2,
    httpRequestTimeout: 10000,
    ...(plan.settings || {})
  })
  const statuses = []
  const errors = []
  analytics.on('http_response', (response) => statuses.push(response.status))
  analytics.on('error', (error) => errors.push(String(error.reason || error.message || error.code || error)))
  for (const [method, params] of plan.calls) {
    analytics[method](params)
  }
  await analytics.closeAndFlush({ timeout: 20000 })
  process.stdout.write(JSON.stringify({ statuses, errors }) + '\n')
}

main().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n')
  process.exit(1)
})
