#!/usr/bin/env bash
# test_notify.sh: coupond under a service manager's notify socket
# ($NOTIFY_SOCKET, as systemd's Type=notify sets it): READY=1 after start,
# WATCHDOG=1 at half of $WATCHDOG_USEC, RELOADING=1 with MONOTONIC_USEC then
# READY=1 on SIGHUP, STOPPING=1 on SIGTERM; a path and an abstract socket.
# usage: test_notify.sh BUILD_DIR SOURCE_DIR (local services up)
set -u
source "$(dirname "$0")/lib.sh"
trap lib_cleanup EXIT
setup_store

# notify SOCKET ROLE: runs coupond under SOCKET, drives it, prints what it saw
# as "event ..." lines and finally "exit CODE".
notify() {
    python3 - "$1" "$build/coupond" "$2" "$tmp/coupond.log" "${sets[@]}" <<'PY'
import os, signal, socket, subprocess, sys, time
sock_name, prog, role, log = sys.argv[1:5]
sets = sys.argv[5:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sock_name[1:] if sock_name.startswith("@") else sock_name)
s.settimeout(0.2)
env = dict(os.environ, NOTIFY_SOCKET=sock_name, WATCHDOG_USEC="1000000")
with open(log, "ab") as out:
    p = subprocess.Popen([prog, *sets, "--role", role], env=env, stdout=out, stderr=out)
def take(want, secs):
    """Messages until one containing want (or secs pass); returns them."""
    got, end = [], time.time() + secs
    while time.time() < end:
        try:
            m = s.recv(4096).decode()
        except socket.timeout:
            continue
        got.append(m)
        if want in m.split("\n"):
            break
    return got
def show(what, msgs):
    for m in msgs:
        print(what, m.replace("\n", " | "))
show("start", take("READY=1", 20))
t0 = time.time()
wd = [m for m in take("never", 2.2) if "WATCHDOG=1" in m]
print("watchdogs", len(wd))
p.send_signal(signal.SIGHUP)
show("hup", take("READY=1", 10))
p.send_signal(signal.SIGTERM)
show("term", take("STOPPING=1", 10))
print("exit", p.wait(20))
PY
}

for sock in "$tmp/notify.sock" "@coupond-test-$run"; do
    out=$(notify "$sock" l)
    echo "$out" | sed "s|^|  $sock: |"
    grep -q '^start READY=1 | STATUS=' <<<"$out" && ok || bad "$sock: no READY=1 with a status"
    w=$(awk '$1 == "watchdogs" { print $2 }' <<<"$out")
    # At half of 1 s over 2.2 s: 4 or 5, whatever the start took.
    check "$sock: watchdog pings ($w)" test "${w:-0}" -ge 3 -a "${w:-0}" -le 6
    grep -q '^hup RELOADING=1 | MONOTONIC_USEC=[0-9]' <<<"$out" && ok || bad "$sock: no RELOADING=1 with MONOTONIC_USEC"
    grep -q '^hup READY=1' <<<"$out" && ok || bad "$sock: no READY=1 after the reload"
    grep -q '^term STOPPING=1' <<<"$out" && ok || bad "$sock: no STOPPING=1 on SIGTERM"
    eq "$sock: exit code" "$(awk '$1 == "exit" { print $2 }' <<<"$out")" 0
done

# Without NOTIFY_SOCKET nothing changes: the lane starts and stops as before.
start_coupond w "$tmp/plain.log"
sleep 2
kill -TERM "$coupond_pid"
wait "$coupond_pid"
eq "without a notify socket: exit code" $? 0
grep -q "W lane stopping" "$tmp/plain.log" && ok || bad "no orderly stop: $(tail -5 "$tmp/plain.log")"

((fail)) && tail -30 "$tmp/coupond.log" >&2
lib_done
