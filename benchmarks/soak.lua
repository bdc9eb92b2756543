-- wrk script of benchmarks/soak.py: every connection rotates six requests and counts the answers.
-- Arguments (after --): a tag for the feedback card ids, the folder of the bodies, the delay in ms
-- between an answer and the next request on the same connection (0: closed loop, as fast as it can).

local kinds = {
  {name = "patient-view", path = "/cds-services/vcf-patient-view"},
  {name = "order-sign", path = "/cds-services/vcf-order-sign"},
  {name = "malformed", path = "/cds-services/vcf-patient-view"},
  {name = "wrong-hook", path = "/cds-services/vcf-order-sign"},  -- a patient-view body: 400
  {name = "required-missing", path = "/cds-services/vcf-patient-view"},  -- 412
  {name = "feedback", path = "/cds-services/vcf-patient-view/feedback"},
}
local headers = {["Content-Type"] = "application/json"}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  tag, folder, pause = args[1], args[2], tonumber(args[3])
  bodies = {}
  for i, kind in ipairs(kinds) do
    local file = assert(io.open(folder .. "/" .. kind.name .. ".json", "rb"))
    bodies[i] = file:read("*a")
    file:close()
  end
  sent, statuses, acknowledged = 0, {}, {}
end

function request()
  sent = sent + 1
  local i = (sent - 1) % #kinds + 1
  local body = bodies[i]
  if kinds[i].name == "feedback" then
    body = string.format(
      '{"feedback": [{"card": "soak-%s-%d-%d", "outcome": "accepted", "outcomeTimestamp": "2026-06-15T14:00:00Z"}]}',
      tag, thread_number, sent)
  end
  return wrk.format("POST", kinds[i].path, headers, body)
end

function delay()
  return pause
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 200 and string.find(body, '"stored":1', 1, true) then
    -- the card was never issued, so the answer names it: the id of the item just stored
    table.insert(acknowledged, string.match(body, '"unknownCards":%["([^"]+)"%]') or "?")
  end
end

function done(summary, latency, requests)
  local merged, acked = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
    for _, id in ipairs(thread:get("acknowledged")) do
      io.write("ACK ", id, "\n")
      acked = acked + 1
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK {"requests": %d, "duration_us": %d, "acknowledged": %d, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}}\n',
    summary.requests, summary.duration, acked, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
