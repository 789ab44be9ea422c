#!/usr/bin/env python3
"""Time from creating a 1-second schedule to its first delivery, and the fire lag (arrival minus
the scheduled second), against a running hookbeat with --allow-private-targets.

    cargo run --release -- --allow-private-targets &
    python3 scripts/first_delivery.py http://127.0.0.1:8080 "$(cargo run --release -q -- token --tenant demo)"

It creates ten schedules one after another (each deleted after its first delivery), receiving on
127.0.0.1:9011.
"""
import http.server, json, subprocess, sys, threading, time, urllib.request
from datetime import datetime
arrivals = []
class R(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time()
        self.rfile.read(int(self.headers["content-length"] or 0))
        arrivals.append((t, self.headers["hookbeat-schedule-id"], self.headers["hookbeat-scheduled-for"]))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 9011), R)
threading.Thread(target=srv.serve_forever, daemon=True).start()
api, token = sys.argv[1], sys.argv[2]
results = []
for i in range(10):
    body = json.dumps({"name": f"lat-{i}-{time.time()}", "schedule": {"kind": "interval", "every_seconds": 1},
                       "target": {"url": "http://127.0.0.1:9011/x"}}).encode()
    req = urllib.request.Request(api + "/v1/schedules", data=body, method="POST",
        headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    t0 = time.time()
    sid = json.load(urllib.request.urlopen(req))["id"]
    while not any(a[1] == sid for a in arrivals): time.sleep(0.001)
    first = next(a for a in arrivals if a[1] == sid)
    sched = datetime.fromisoformat(first[2].replace("Z", "+00:00")).timestamp()
    results.append((first[0] - t0, first[0] - sched))
    req = urllib.request.Request(api + "/v1/schedules/" + sid, method="DELETE", headers={"authorization": "Bearer " + token})
    urllib.request.urlopen(req)
    time.sleep(0.37)
for c, l in results: print(f"create->first delivery {c*1000:7.1f} ms   fire lag {l*1000:6.1f} ms")
cs = sorted(r[0] for r in results); ls = sorted(r[1] for r in results)
print(f"create->first: min {cs[0]*1000:.0f} ms, median {cs[len(cs)//2]*1000:.0f} ms, max {cs[-1]*1000:.0f} ms; fire lag: median {ls[len(ls)//2]*1000:.1f} ms, max {ls[-1]*1000:.1f} ms")
