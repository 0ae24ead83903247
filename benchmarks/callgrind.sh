#!/bin/bash
# Instructions per request of ferrule's request path, counted by callgrind (issue 5).
#
# usage: benchmarks/callgrind.sh [MODULE [OUT]]     defaults: hello, /tmp/ferrule.callgrind
#        BROWSER=1 benchmarks/callgrind.sh ...       requests carry ten browser-like fields
#        BODY=4096 benchmarks/callgrind.sh echo ...   POST bodies of BODY bytes (the echo scenario)
#        SERVER=fastwsgi benchmarks/callgrind.sh ...  count a peer instead: fastwsgi or bjoern
#                                                     (benchmarks/.venv), limit (hyper, no
#                                                     Python) or raw (httparse, no hyper)
#        URLPATH=/api/items benchmarks/callgrind.sh flask_app ...  load another path than /
#        VALGRIND_ARGS=--cache-sim=yes benchmarks/callgrind.sh ...  also count cache misses
#                                                     (I1mr, D1mr, ... in callgrind_annotate)
#
# Serves benchmarks/apps/MODULE.py with ferrule.serve() (one thread: the inline path)
# under valgrind, loads it with wrk for 3 s untimed, then counts instructions over
# 6 s of `wrk -t1 -c64 GET $URLPATH`. Prints the total, the requests (calls of
# worker::begin; for a peer, the requests wrk counted) and their ratio; `callgrind_annotate --inclusive=yes OUT.1` shows
# where they go. Instruction counts do not depend on other load on the machine, but
# the total varies by 1 to 2% from run to run (how many requests each turn of the
# event loop finds ready); one function's inclusive count per call varies less.
# Needs valgrind and wrk, and a `make build-dev` build in .venv.
set -euo pipefail
MODULE=${1:-hello}
OUT=${2:-/tmp/ferrule.callgrind}
PORT=${PORT:-18231}
URL=http://127.0.0.1:$PORT${URLPATH:-/}
FIELDS=()
if [ -n "${BROWSER:-}" ]; then
    FIELDS=(
        -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        -H "Accept-Language: en-US,en;q=0.5"
        -H "Accept-Encoding: gzip, deflate, br"
        -H "Cookie: session=abc123; theme=dark"
        -H "Upgrade-Insecure-Requests: 1"
        -H "Sec-Fetch-Dest: document"
        -H "Sec-Fetch-Mode: navigate"
        -H "Sec-Fetch-Site: none"
        -H "X-Request-Id: 7f3c9a"
    )
fi
if [ -n "${BODY:-}" ]; then
    SCRIPT=$(mktemp --suffix=.lua)
    printf 'wrk.method = "POST"\nwrk.body = string.rep("a", %d)\n' "$BODY" > "$SCRIPT"
    printf 'wrk.headers["Content-Type"] = "application/octet-stream"\n' >> "$SCRIPT"
    FIELDS+=(-s "$SCRIPT")
fi
cd "$(dirname "$0")/.."
rm -f "$OUT" "$OUT".*
SERVER=${SERVER:-ferrule}
# str hashes are salted per process, and with them how many probes a dict
# look-up takes: a fixed seed makes the environ's dict work repeat run to run.
export PYTHONHASHSEED=${PYTHONHASHSEED:-0}
case $SERVER in
    ferrule) COMMAND=(.venv/bin/python -c "import sys; sys.path.insert(0, 'benchmarks/apps'); \
import $MODULE as m, ferrule; ferrule.serve(m.app, port=$PORT)") ;;
    fastwsgi | bjoern) export PYTHONPATH=benchmarks/apps
        COMMAND=(benchmarks/.venv/bin/python benchmarks/peer_server.py "$SERVER" \
            "127.0.0.1:$PORT" "$MODULE:app") ;;
    limit) COMMAND=(benchmarks/limit/target/release/ferrule-bench-limit --bind "127.0.0.1:$PORT") ;;
    raw) COMMAND=(benchmarks/limit/target/release/ferrule-bench-raw --bind "127.0.0.1:$PORT") ;;
    *) echo "SERVER is ferrule, fastwsgi, bjoern, limit or raw" >&2; exit 2 ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$OUT" --instr-atstart=no ${VALGRIND_ARGS:-} \
    "${COMMAND[@]}" > "$OUT.log" 2>&1 &
VALGRIND=$!
for _ in $(seq 60); do curl -s -o /dev/null "$URL" && break; sleep 1; done
wrk "${FIELDS[@]}" -t1 -c64 -d3s "$URL" > /dev/null
callgrind_control -i on $VALGRIND > /dev/null 2>&1
COUNTED=$(wrk "${FIELDS[@]}" -t1 -c64 -d6s "$URL" | awk '/requests in/ {print $1}')
callgrind_control -i off $VALGRIND > /dev/null 2>&1
callgrind_control -d $VALGRIND > /dev/null 2>&1
sleep 1
kill -INT $VALGRIND
sleep 2
kill -9 $VALGRIND 2> /dev/null || true
wait $VALGRIND 2> /dev/null || true
# The dump of the running process is OUT.1; OUT itself is written at exit.
TOTAL=$(callgrind_annotate "$OUT.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
REQUESTS=$COUNTED
[ "$SERVER" = ferrule ] && REQUESTS=$(callgrind_annotate --tree=caller --threshold=100 "$OUT.1" | awk '
    /  < / { if (match($0, /\(([0-9,]+)x\)/)) { n = substr($0, RSTART + 1, RLENGTH - 3); gsub(",", "", n); calls += n } next }
    /\*  .*_ferrule::py::worker::begin / && !found { found = calls }
    { calls = 0 }
    END { print found }')
python3 -c "print(f'{$TOTAL:,} instructions, {$REQUESTS:,} requests: {$TOTAL / $REQUESTS:,.0f} per request')"
