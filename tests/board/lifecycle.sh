#!/bin/sh
# A board script as they are written for a kernel: list the remote processors, follow the class
# links into /sys/devices, stop and start every one (the preloaded one too), and check that each
# processor's virtio device keeps its number across the restart.
set -eu

wait_state() {  # FILE WANT: the state file says WANT within 30 s
	i=0
	while [ "$(cat "$1")" != "$2" ]; do
		i=$((i + 1))
		[ $i -lt 3000 ] || { echo "timeout: $1 is $(cat "$1"), not $2"; exit 1; }
		sleep 0.01
	done
}

virtio_of() {  # the virtioN below a processor's device directory, or "-"
	v=$(ls -d "$1"/rproc-virtio.*.auto/virtio* 2>/dev/null | head -n 1)
	[ -n "$v" ] && basename "$v" || echo -
}

for r in $(find /sys/class/remoteproc/remoteproc* -maxdepth 1); do
	[ -L "$r" ] || { echo "$r is not a link"; exit 1; }
	dev=$(readlink -f "$r")
	case "$dev" in
	/sys/devices/platform/*/remoteproc/remoteproc*) ;;
	*) echo "$r -> $dev: not in /sys/devices"; exit 1 ;;
	esac
	pdev=$(readlink -f "$r/device")
	echo "$(basename "$r") $(cat "$r/name") $(cat "$r/state") $(basename "$pdev") \
$(basename "$(readlink "$pdev/driver")") $(virtio_of "$dev")"
done

for r in /sys/class/remoteproc/remoteproc*; do
	dev=$(readlink -f "$r")
	before=$(virtio_of "$dev")
	state=$(cat "$r/state")
	if [ "$state" = running ] || [ "$state" = attached ]; then
		echo stop > "$r/state"
		wait_state "$r/state" offline
		[ "$(virtio_of "$dev")" = - ] || { echo "virtio left after stop"; exit 1; }
		echo start > "$r/state"
		wait_state "$r/state" running
	else
		echo start > "$r/state"
		wait_state "$r/state" running
		echo stop > "$r/state"
		wait_state "$r/state" offline
	fi
	after=$(virtio_of "$dev")
	echo "$(basename "$r") $(cat "$r/state") $before -> $after"
done
