-- wrk script: POST the body in the file named by the first argument.
-- Optional second argument: requests per second for each connection (a paced load).
-- Optional third argument: requests per thread after which the thread stops.
-- Each "%ID%" in the body becomes a new UUID in every request (time-ordered, as the browser
-- client makes them), so that no event is a duplicate of another.
local body_file, per_connection_rate, limit
local answered = 0
local template, sent_ids = nil, 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  if wrk.body:find("%ID%", 1, true) then
    template = wrk.body
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  per_connection_rate = tonumber(args[2] or "0")
  limit = tonumber(args[3] or "0")
end

local function next_id()
  sent_ids = sent_ids + 1
  local random = math.random
  return string.format("%08x-%04x-7%03x-%04x-%04x%08x", os.time(), sent_ids % 65536,
    random(0, 4095), 32768 + random(0, 16383), random(0, 65535), sent_ids)
end

if true then
  -- A request() hook costs wrk a Lua call per request: only with ids.
  local with_ids = os.getenv("ATTOLYTICS_BENCH_IDS")
  if with_ids == "1" then
    function request()
      return wrk.format(nil, nil, nil, (template:gsub("%%ID%%", next_id)))
    end
  end
end

function delay()
  if per_connection_rate > 0 then
    -- Random gaps (exponential, mean 1/rate) keep the connections from firing in lockstep:
    -- a paced load arrives spread out, as independent clients' requests do.
    return -math.log(1 - math.random()) * 1000 / per_connection_rate
  end
  return 0
end

if true then
  -- Only count when a limit is asked for: a response() hook makes wrk parse every answer.
  local wanted = os.getenv("ATTOLYTICS_BENCH_LIMITED")
  if wanted == "1" then
    function response(status, headers, body)
      answered = answered + 1
      if limit > 0 and answered >= limit then
        wrk.thread:stop()
      end
    end
  end
end
