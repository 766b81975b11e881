#!/bin/busybox sh
# /init of the VMs of crosskernel.sh. Kernel command line: ckptmode=freeze starts
# the targets, freezes them once the machine has been up FREEZE_UPTIME seconds
# (so that a later boot's clocks are behind the freeze's) and sends the frozen
# files and the logs out on the second serial port; ckptmode=resume resumes the
# files found in /out and sends the logs, exit codes and `ckpt check` reports.
/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /out
mode=$(sed -n 's/.*ckptmode=\([a-z]*\).*/\1/p' /proc/cmdline)
TARGETS="vmclock vmclock-static vmclock-go"
data=/dev/ttyS1
stty -F $data raw -echo 2>/dev/null

send() { # send NAME PATH: the file, base64, between markers
    echo "=====FILE $1" > $data
    base64 "$2" > $data
    echo "=====END" > $data
}

uptime_s() { cut -d. -f1 /proc/uptime; }

echo "ckpt-vm: mode $mode, kernel $(uname -r)" > /dev/console
if [ "$mode" = freeze ]; then
    for t in $TARGETS; do
        [ -x /targets/$t ] || continue
        /targets/$t 330 > /out/$t.log 2>&1 < /dev/null &
        echo $! > /out/$t.pid
    done
    while [ "$(uptime_s)" -lt "${FREEZE_UPTIME:-20}" ]; do sleep 1; done
    for t in $TARGETS; do
        [ -f /out/$t.pid ] || continue
        /ckpt freeze "$(cat /out/$t.pid)" -o /out/$t.ckpt --image > /out/$t.freeze 2>&1
        echo "$?" >> /out/$t.freeze
        send $t.ckpt /out/$t.ckpt
        send $t.log /out/$t.log
        send $t.freeze /out/$t.freeze
    done
else
    for t in $TARGETS; do
        [ -f /out/$t.ckpt ] || continue
        /ckpt check /out/$t.ckpt > /out/$t.check 2>&1
        ( /ckpt resume /out/$t.ckpt; echo "$?" > /out/$t.rc ) > /out/$t.resume 2>&1 &
    done
    wait
    for t in $TARGETS; do
        [ -f /out/$t.ckpt ] || continue
        for f in log check rc resume; do
            [ -f /out/$t.$f ] && send $t.$f /out/$t.$f
        done
    done
fi
echo "=====DONE" > $data
sync
poweroff -f
