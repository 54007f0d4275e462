-- Status-mix probe: runs the shared yardstick script unchanged (its path in YARDSTICK_LUA) and
-- also counts the HTTP status of every response, printed by done() as one line:
--   STATUS_MIX {"202":1234,"409":2}
-- Only used for the short probe runs; the measured rounds run post_completion.lua alone,
-- because a response() callback makes wrk parse every response in Lua and costs throughput.
local threads = {}
dofile(os.getenv("YARDSTICK_LUA"))

local yardstick_setup = setup
function setup(thread)
  table.insert(threads, thread)
  if yardstick_setup then yardstick_setup(thread) end
end

statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("statuses") or {}) do total[code] = (total[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(total) do table.insert(parts, string.format('"%d":%d', code, n)) end
  io.write("STATUS_MIX {" .. table.concat(parts, ",") .. "}\n")
end
