#!/bin/busybox sh
# /init of the lab guest: mount the pseudo file systems, start the long-lived
# workloads, say "INIT ready" on the console, and serve a command shell on ttyS1.
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mkdir -p /tmp/log
hostname lab
/bin/wl-maps /bin/wl-maps >/tmp/log/wl-maps.log 2>&1 &
/bin/wl-maps-static /bin/wl-maps-static >/tmp/log/wl-maps-static.log 2>&1 &
/bin/wl-leak --wait >/tmp/log/wl-leak.log 2>&1 &
stty -F /dev/ttyS1 raw -echo
while true; do
  # each line runs in a subshell: a background job it starts is then init's child, and its
  # exit cannot interrupt this shell's read of the next line (which cut lines short)
  sh -c 'while IFS= read -r line; do (eval "$line"); done' </dev/ttyS1 >/dev/ttyS1 2>&1
done &
# ready only once the long-lived workloads have said so (a loaded host can make that slow)
for i in $(seq 300); do
  grep -q ready /tmp/log/wl-maps.log && grep -q ready /tmp/log/wl-maps-static.log \
    && grep -q done /tmp/log/wl-leak.log && break
  sleep 0.1
done
echo "INIT ready $(uname -r)"
while true; do sleep 3600; done
