#!/usr/bin/env bash
# Echo on a RunPod A40 pod. Unzip the package (echo-server package) under /workspace, then:
#     bash /workspace/echo/runpod_launcher.sh            (--dry-run: print what it would do)
# Safe to run again, after a pod restart too: what is installed stays under /workspace.
# Secrets come from the environment only (set ECHO_ORIGIN_TOKEN in RunPod's dashboard);
# nothing is written to a .env and the token is never printed.
set -euo pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done

ECHO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORKSPACE="${WORKSPACE:-/workspace}"
VENV="${ECHO_VENV:-$WORKSPACE/echo-venv}"
CONFIG="${ECHO_CONFIG:-$ECHO_DIR/configs/a40.yaml}"
PORT="${ECHO_PORT:-8000}"
LOG="${ECHO_LOG:-$WORKSPACE/echo.log}"
PIDFILE="$WORKSPACE/echo.pid"
ECHO="$VENV/bin/echo-server"
cd "$ECHO_DIR"  # memory/, its index and backups live beside the code, on the pod's volume

run() {  # print, then run unless this is a dry run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}
step() { printf '\n== %s\n' "$*"; }

step "1/6 checks"
if [ -n "${ECHO_ORIGIN_TOKEN:-}" ]; then echo "ECHO_ORIGIN_TOKEN is set"; else
  echo "WARNING: ECHO_ORIGIN_TOKEN is not set: set it in the RunPod dashboard (Environment Variables) to enable the owner's commands"
fi
if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; else echo "WARNING: no nvidia-smi: the circuits will run on the CPU"; fi
run mkdir -p memory

step "2/6 environment in $VENV (llama-cpp-python built with CUDA, once)"
if [ -x "$ECHO" ] && [ "$VENV/.echo-installed" -nt "$ECHO_DIR/pyproject.toml" ]; then
  echo "already installed"
else
  run env ECHO_CUDA=1 bash "$ECHO_DIR/scripts/setup.sh" "$VENV" ""
  run touch "$VENV/.echo-installed"
fi

step "3/6 models and the rest (echo-server doctor, echo-server plan)"
run "$ECHO" doctor --config "$CONFIG" --metrics-port 8080 || { echo "fix the errors above, then run this again" >&2; exit 1; }
run "$ECHO" plan --config "$CONFIG" --gpu-gb 48 || { echo "the circuits do not fit on this GPU: see the plan above" >&2; exit 1; }

step "4/6 stop an Echo started before (a second run restarts it)"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  run kill -TERM "$(cat "$PIDFILE")"
  [ "$DRY_RUN" = 1 ] || for _ in $(seq 60); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 1; done
fi
run "$VENV/bin/ray" stop --force

step "5/6 start Ray and Serve on port $PORT (the port opens before the models finish loading)"
echo "+ nohup $ECHO serve --config $CONFIG --host 0.0.0.0 --port $PORT >> $LOG 2>&1 &"
if [ "$DRY_RUN" = 0 ]; then
  nohup "$ECHO" serve --config "$CONFIG" --host 0.0.0.0 --port "$PORT" >> "$LOG" 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 180); do curl -fsS "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break; sleep 1; done
  curl -fsS "http://127.0.0.1:$PORT/" >/dev/null || { echo "Echo did not open port $PORT: see $LOG" >&2; exit 1; }
  echo "Echo is up on port $PORT (RunPod proxy: https://<pod-id>-$PORT.proxy.runpod.net/); log: $LOG"
fi

step "6/6 the first replay of memory/ (the MemoryActor runs it as Echo starts)"
if [ "$DRY_RUN" = 0 ]; then
  for _ in $(seq 600); do
    state="$(curl -fsS "http://127.0.0.1:$PORT/health" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["memory"].get("replay", {}).get("state", "?"))' 2>/dev/null || echo starting)"
    [ "$state" = "ready" ] && break
    sleep 2
  done
  echo "memory replay: $state (models may still be loading: curl http://127.0.0.1:$PORT/health)"
else
  echo "+ wait until http://127.0.0.1:$PORT/health says memory.replay.state = ready"
fi
