#!/usr/bin/env bash
# Smoke test on a real container engine: build the image, run it, check /health/ready, the healthcheck,
# the non-root user and one prediction of each demo model from the host; then the same through the
# compose file (default profile). Uses docker when a Docker daemon answers, else podman + podman-compose
# (see /work/shared/tools/container-engine.sh for a machine without Docker). Not run in CI.
#
#   bash docker/smoke-test.sh            (or: make docker-smoke)
#
# Environment: SMOKE_PORT (host port, default 18000), IMAGE (default fastai-serve:cpu, the compose file's
# tag), SKIP_COMPOSE=1, KEEP=1 (leave the containers running). When the PyTorch index is unreachable and
# this machine has a CPU torch wheel under /opt/wheels (see `pip config list`), the build takes torch from
# that file and torchvision from PyPI (TORCHVISION_OPS_OPTIONAL=1, see docker/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${SMOKE_PORT:-18000}
IMAGE=${IMAGE:-fastai-serve:cpu}
NAME=fastai-serve-smoke
BASE="http://127.0.0.1:${PORT}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LOCAL_WHEELS=${LOCAL_WHEELS:-/opt/wheels}

log() { printf '\n== %s\n' "$*"; }
die() { printf 'SMOKE FAILED: %s\n' "$*" >&2; exit 1; }

if docker info >/dev/null 2>&1; then
  ENGINE=docker; COMPOSE=(docker compose)
elif command -v podman >/dev/null; then
  ENGINE=podman; COMPOSE=(podman-compose)
else
  die "neither a Docker daemon nor podman; run: bash /work/shared/tools/container-engine.sh"
fi

# --- build arguments -------------------------------------------------------------------------------
build_args=()
engine_build_flags=()
if [ "$ENGINE" = podman ]; then
  # docker format keeps HEALTHCHECK (OCI images drop it); host network as the engine is set up here.
  engine_build_flags+=(--format docker --pull=missing --network host)
  if [ -f "$CA_BUNDLE" ]; then
    engine_build_flags+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
    build_args+=(--build-arg "PIP_CERT=$CA_BUNDLE")
  fi
fi
torch_wheel=$(ls "$LOCAL_WHEELS"/torch-*+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
if [ -n "$torch_wheel" ] && [ "$ENGINE" = podman ] \
   && ! curl -s -o /dev/null -m 5 https://download.pytorch.org/whl/cpu/; then
  torch_version=$(basename "$torch_wheel" | cut -d- -f2)          # e.g. 2.13.0+cpu
  echo "PyTorch index unreachable: torch $torch_version from $torch_wheel, torchvision from PyPI"
  engine_build_flags+=(-v "$LOCAL_WHEELS:/wheels:ro")
  export TORCH_INDEX_URL=https://pypi.org/simple  # the compose file's build arg follows it too
  build_args+=(--build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=https://pypi.org/simple
               --build-arg "TORCH_VERSION=$torch_version" --build-arg TORCHVISION_OPS_OPTIONAL=1)
fi

# --- checks ----------------------------------------------------------------------------------------
wait_ready() {  # $1 = seconds
  local deadline=$((SECONDS + $1))
  until curl -fsS -m 5 "$BASE/health/ready" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { curl -sS -m 5 "$BASE/health/ready" || true; return 1; }
    sleep 2
  done
}

check_api() {  # $1 = container name
  local started=$SECONDS
  wait_ready 240 || die "/health/ready not 200 after 240 s"
  echo "ready after $((SECONDS - started)) s: $(curl -fsS "$BASE/health/ready")"
  curl -fsS "$BASE/api/v1/tabular/adult-income/predict" -H 'Content-Type: application/json' -d '{"rows": [
      {"age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors", "education-num": 13,
       "marital-status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
       "race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0, "hours-per-week": 40,
       "native-country": "United-States"}]}' \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); p=b["predictions"][0]; assert abs(sum(p["probabilities"].values())-1)<1e-4; print("adult-income:", p["label"], p["probabilities"])'
  curl -fsS "$BASE/api/v1/vision/cifar10/predict?top_k=3" -F files=@examples/airplane.jpg -F files=@examples/cat.jpg \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); [print("cifar10:", p["filename"], "->", [(t["label"], round(t["probability"], 3)) for t in p["top_k"]]) for p in b["predictions"]]; assert len(b["predictions"]) == 2'
  echo "share (no sidecar): $(curl -fsS "$BASE/api/v1/share")"
  echo "GET / -> $(curl -s -o /dev/null -w '%{http_code} %{content_type}' "$BASE/")"
  echo "user in container: $($ENGINE exec "$1" id)"
  if [ "$ENGINE" = podman ]; then
    # No systemd here to schedule healthchecks: run the image's HEALTHCHECK once by hand.
    $ENGINE healthcheck run "$1" && echo "healthcheck: healthy" || die "healthcheck failed"
  else
    local deadline=$((SECONDS + 120)) status
    until status=$($ENGINE inspect -f '{{.State.Health.Status}}' "$1"); [ "$status" = healthy ]; do
      [ $SECONDS -lt $deadline ] || die "healthcheck: $status"; sleep 3
    done
    echo "healthcheck: $status"
  fi
}

cleanup() {
  [ "${KEEP:-0}" = 1 ] && return
  $ENGINE rm -f "$NAME" >/dev/null 2>&1 || true
  FASTAI_SERVE_HOST_PORT=$PORT "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- 1. image ----------------------------------------------------------------------------------------
log "build $IMAGE with $ENGINE"
started=$SECONDS
$ENGINE build "${engine_build_flags[@]}" "${build_args[@]}" -f docker/Dockerfile -t "$IMAGE" .
echo "build: $((SECONDS - started)) s"
echo "image size: $($ENGINE image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
echo "healthcheck in image: $($ENGINE image inspect -f '{{json .Config.Healthcheck}}' "$IMAGE" | cut -c1-80)..."

log "run $IMAGE"
$ENGINE rm -f "$NAME" >/dev/null 2>&1 || true
if [ "$ENGINE" = podman ]; then
  # podman here shares the host network (containers.conf netns=host): bind the chosen port directly.
  $ENGINE run -d --name "$NAME" --network host -e "FASTAI_SERVE_PORT=$PORT" "$IMAGE" >/dev/null
else
  $ENGINE run -d --name "$NAME" -p "$PORT:8000" "$IMAGE" >/dev/null
fi
check_api "$NAME" || { $ENGINE logs "$NAME" | tail -30; die "image checks"; }
$ENGINE rm -f "$NAME" >/dev/null

# --- 2. compose --------------------------------------------------------------------------------------
[ "${SKIP_COMPOSE:-0}" = 1 ] && { echo "SMOKE OK (compose skipped)"; exit 0; }
log "compose up (default profile) with ${COMPOSE[*]}"
export FASTAI_SERVE_HOST_PORT=$PORT
if [ "$ENGINE" = podman ]; then
  # Same build flags as above; the layers are cached, so this is quick.
  "${COMPOSE[@]}" --podman-build-args "${engine_build_flags[*]} ${build_args[*]}" build api
  "${COMPOSE[@]}" up -d
else
  "${COMPOSE[@]}" up -d --build
fi
project=(--filter label=com.docker.compose.project=fastai-serve)
api=$($ENGINE ps -q "${project[@]}" --filter label=com.docker.compose.service=api | head -1)
[ -n "$api" ] || die "no api container"
echo "containers: $($ENGINE ps "${project[@]}" --format '{{.Names}} ({{.Status}}, {{.Ports}})' | tr '\n' ' ')"
check_api "$api" || { "${COMPOSE[@]}" logs api | tail -30; die "compose checks"; }
echo "models in the compose volume: $($ENGINE exec "$api" ls /app/model_store | tr '\n' ' ')"
echo "volumes: $($ENGINE volume ls --format '{{.Name}}' | grep fastai-serve | tr '\n' ' ')"
echo "SMOKE OK"
