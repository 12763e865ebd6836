#!/bin/sh
# The container's first process. `run ...`: the daemon as a child, SIGTERM/SIGINT passed on
# to it, and once it has ended (however: a clean stop, a crash, the OOM killer) every relay
# driven de-energised with `parking-gateway relays-off`, as systemd's ExecStopPost= does on
# a host; the container exits with the daemon's code (0 after a SIGTERM). Anything else is
# handed to parking-gateway as it is (check-config, hw-test, relays-off, monitor, ...).
set -u
if [ "${1:-}" != "run" ]; then
    exec parking-gateway "$@"
fi
config=""
previous=""
for arg in "$@"; do
    [ "$previous" = "--config" ] && config=$arg
    case $arg in --config=*) config=${arg#--config=} ;; esac
    previous=$arg
done
parking-gateway "$@" &
daemon=$!
trap 'kill -TERM "$daemon" 2>/dev/null' TERM INT
status=0
wait "$daemon" || status=$?
# a signal cuts the wait short (status 128+n) while the daemon is still stopping: wait on
# until it has really ended, for its own exit code
while kill -0 "$daemon" 2>/dev/null; do
    status=0
    wait "$daemon" || status=$?
done
if [ -n "$config" ]; then
    parking-gateway relays-off --config "$config" || echo "relays-off failed" >&2
else
    echo "relays-off skipped: no --config (the embedded demo drives no real relay)" >&2
fi
exit "$status"
