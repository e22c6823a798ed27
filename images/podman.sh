#!/usr/bin/env bash
# Rootful podman as the Docker engine of `make images` and `make run-pipeline RUNNER=docker`, on hosts
# where podman's defaults do not start a container (CI runners, containers in containers).
#
#   eval "$(images/podman.sh env)"   write the containers.conf below, print `export CONTAINERS_CONF=...`
#   images/podman.sh service         start `podman system service` on a socket (unless one answers)
#                                    and print `export DOCKER_HOST=unix://...` for KFP's DockerRunner
#   images/podman.sh stop            stop the service started by `service`
#
# The containers.conf asks for what such hosts allow:
#   runtime = "runc"            crun 1.8 refuses hybrid cgroup v1+v2 hosts ("cgroups in hybrid mode")
#   cgroup_manager = "cgroupfs" no systemd in the container that runs the builds
#   default_ulimits             rootful podman asks for nofile/nproc 1048576, which a process without
#                               CAP_SYS_RESOURCE cannot grant: this shell's hard limits instead
#
# Environment: ZONDA_PODMAN_DIR (default /var/tmp/zonda-podman) holds the conf, socket, pid and log.
set -euo pipefail

die() { echo "images/podman.sh: $*" >&2; exit 1; }

dir=${ZONDA_PODMAN_DIR:-/var/tmp/zonda-podman}
conf="$dir/containers.conf"
socket="$dir/podman.sock"
pidfile="$dir/service.pid"

write_conf() {
  mkdir -p "$dir"
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [[ "$nofile" == unlimited ]] && nofile=1048576
  # conmon and the container's init share this budget: at most 32768 processes each.
  if [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]]; then nproc=32768; fi
  cat > "$conf" << EOF
# Written by images/podman.sh for this host.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
}

case "${1:-}" in
  env)
    command -v podman > /dev/null 2>&1 || die "podman is not installed (apt-get install podman runc)"
    write_conf
    echo "export CONTAINERS_CONF=$conf"
    ;;
  service)
    command -v podman > /dev/null 2>&1 || die "podman is not installed (apt-get install podman runc)"
    [[ -f "$conf" ]] || write_conf
    export CONTAINERS_CONF="$conf"
    if ! curl --silent --fail --unix-socket "$socket" http://d/_ping > /dev/null 2>&1; then
      rm -f "$socket"
      podman system service --time=0 "unix://$socket" > "$dir/service.log" 2>&1 &
      echo $! > "$pidfile"
      for _ in $(seq 50); do
        curl --silent --fail --unix-socket "$socket" http://d/_ping > /dev/null 2>&1 && break
        sleep 0.2
      done
      curl --silent --fail --unix-socket "$socket" http://d/_ping > /dev/null 2>&1 \
        || die "podman system service did not answer on $socket (log: $dir/service.log)"
    fi
    echo "export CONTAINERS_CONF=$conf DOCKER_HOST=unix://$socket"
    ;;
  stop)
    if [[ -f "$pidfile" ]]; then
      kill "$(cat "$pidfile")" 2> /dev/null || true
      rm -f "$pidfile" "$socket"
    fi
    ;;
  *) die "usage: images/podman.sh env|service|stop" ;;
esac
