-- wrk script: POST the JSON file named by the first script argument (wrk ... -s post.lua URL -- FILE)
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
