#!/bin/busybox sh
# /init of the lab guest: mount the pseudo file systems, start the long-lived
# workloads, say "INIT ready" on the console, and serve a command shell on the serial port
# that labshell= names on the kernel command line (the kernel hands init such parameters as
# environment variables; ttyS1 when none is given): ttyS1 on x86-64, ttyS0 (a PCI 16550) on
# arm64's virt machine, whose one PL011 UART is the console.
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
shell_tty=/dev/${labshell:-ttyS1}
stty -F "$shell_tty" raw -echo
while true; do
  # each line runs in a subshell: a background job it starts is then init's child, and its
  # exit cannot interrupt this shell's read of the next line (which cut lines short)
  sh -c 'while IFS= read -r line; do (eval "$line"); done' <"$shell_tty" >"$shell_tty" 2>&1
done &
# ready only once the long-lived workloads have said so (a loaded host can make that slow)
for i in $(seq 300); do
  grep -q ready /tmp/log/wl-maps.log && grep -q ready /tmp/log/wl-maps-static.log \
    && grep -q done /tmp/log/wl-leak.log && break
  sleep 0.1
done
echo "INIT ready $(uname -r)"
while true; do sleep 3600; done
