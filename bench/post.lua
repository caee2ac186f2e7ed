-- wrk script for bench/run.py: POST a postcard to RECEIVER with the bearer token TOKEN (both from
-- the environment); the same request for the server and for the floor. done() prints one JSON
-- line, prefixed BENCH_JSON, that the bench reads instead of parsing wrk's text report.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"receiver_id":"' .. os.getenv("RECEIVER") .. '","content":"hello from the bench","msg_type":"USER_POSTCARD"}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
