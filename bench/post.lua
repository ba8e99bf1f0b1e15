-- wrk script: POST the body in the file named by the first argument.
-- Optional second argument: requests per second for each connection (a paced load).
-- Optional third argument: requests per thread after which the thread stops.
local body_file, per_connection_rate, limit
local answered = 0

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  per_connection_rate = tonumber(args[2] or "0")
  limit = tonumber(args[3] or "0")
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
