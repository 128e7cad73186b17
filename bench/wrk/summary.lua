-- wrk script: leaves the requests alone (plain GET of the URL given to wrk) and
-- prints one machine-readable summary line when the run ends:
--
--   BENCH requests=N duration_s=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=..
--         bytes_per_req=B connect_errors=.. read_errors=.. write_errors=..
--         timeouts=.. status_errors=..
--
-- status_errors counts responses with a status >= 400 (wrk's own definition).
-- No response() callback is defined on purpose: it would make wrk hand every
-- response to Lua and turn the load generator into the bottleneck.

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local e = summary.errors
   local n = summary.requests
   local ms = function(us) return us / 1000.0 end
   io.write(string.format(
      "BENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f "
      .. "bytes_per_req=%.1f connect_errors=%d read_errors=%d write_errors=%d timeouts=%d status_errors=%d\n",
      n, secs, secs > 0 and n / secs or 0,
      ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency.max),
      n > 0 and summary.bytes / n or 0,
      e.connect, e.read, e.write, e.timeout, e.status))
end
