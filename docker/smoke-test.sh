#!/usr/bin/env bash
# Smoke test on a real container engine, from the host:
#   1. build the image, run it: /health/ready, the HEALTHCHECK, the non-root user, /api/v1/share, one
#      prediction of each demo model, and gRPC (ServerReady, one ModelInfer, from inside the container);
#   2. the same through docker-compose.yml (default profile: the api alone, the named model_store volume);
#   3. `--profile public`: refused without a way to sign in (share-policy exits 2, no agent, no URL);
#      then with one (basic auth unless NGROK_* settings say otherwise): /api/v1/share returns the
#      sidecar's public URL and `protected`, the agent got the rendered policy, and the api believes
#      X-Forwarded-For from the sidecar's address only.
# With --ray, instead: the image built with EXTRAS=ray, then `--profile ray` (ray-head + ray-worker):
# both nodes in the cluster, every app deployment running, one prediction of each demo model through
# Ray Serve answered with an X-Served-By header, the worker's healthcheck.
# Uses docker when a Docker daemon answers, else podman + podman-compose (a machine without Docker can
# install those from Debian/PyPI). Not run in CI.
#
#   bash docker/smoke-test.sh            (or: make docker-smoke)
#   bash docker/smoke-test.sh --ray      (or: make docker-smoke-ray)
#
# Environment: SMOKE_PORT (host port, default 18000); IMAGE (default fastai-serve:cpu, the compose file's
# tag); NGROK_AUTHTOKEN (step 3 opens a real tunnel, with your NGROK_OAUTH_* / NGROK_BASIC_AUTH settings,
# basic auth smoke:<random> when none is set); SKIP_COMPOSE=1, SKIP_PUBLIC=1; KEEP=1 (leave the
# containers running). With --ray: SMOKE_RAY_PORT (default 18001), RAY_IMAGE (default fastai-serve:cpu-ray,
# the compose file's tag for the ray profile), RAY_DASHBOARD_HOST_PORT (default 18265). When the PyTorch
# index is unreachable and this machine has a CPU torch wheel under /opt/wheels (see `pip config list`),
# the build takes torch from that file and torchvision from PyPI (TORCHVISION_OPS_OPTIONAL=1, see
# docker/Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  "") MODE=plain ;;
  --ray) MODE=ray ;;
  *) echo "usage: bash docker/smoke-test.sh [--ray]" >&2; exit 2 ;;
esac
if [ "$MODE" = ray ]; then PORT=${SMOKE_RAY_PORT:-18001}; else PORT=${SMOKE_PORT:-18000}; fi
IMAGE=${IMAGE:-fastai-serve:cpu}
RAY_IMAGE=${RAY_IMAGE:-fastai-serve:cpu-ray}
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

predict_demo_models() {  # $1 (optional): keep the response headers in $1.tabular and $1.vision
  local tabular_headers=/dev/null vision_headers=/dev/null
  if [ -n "${1:-}" ]; then tabular_headers=$1.tabular; vision_headers=$1.vision; fi
  curl -fsS -D "$tabular_headers" "$BASE/api/v1/tabular/adult-income/predict" -H 'Content-Type: application/json' -d '{"rows": [
      {"age": 39, "workclass": "State-gov", "fnlwgt": 77516, "education": "Bachelors", "education-num": 13,
       "marital-status": "Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family",
       "race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0, "hours-per-week": 40,
       "native-country": "United-States"}]}' \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); p=b["predictions"][0]; assert abs(sum(p["probabilities"].values())-1)<1e-4; print("adult-income:", p["label"], p["probabilities"])' \
    || die "adult-income prediction"
  curl -fsS -D "$vision_headers" "$BASE/api/v1/vision/cifar10/predict?top_k=3" -F files=@examples/airplane.jpg -F files=@examples/cat.jpg \
    | python3 -c 'import json,sys; b=json.load(sys.stdin); [print("cifar10:", p["filename"], "->", [(t["label"], round(t["probability"], 3)) for t in p["top_k"]]) for p in b["predictions"]]; assert len(b["predictions"]) == 2' \
    || die "cifar10 prediction"
}

check_api() {  # $1 = container name
  local started=$SECONDS
  wait_ready 240 || die "/health/ready not 200 after 240 s"
  echo "ready after $((SECONDS - started)) s: $(curl -fsS "$BASE/health/ready")"
  predict_demo_models
  echo "share (no sidecar): $(curl -fsS "$BASE/api/v1/share")"
  # gRPC with the image's own stubs (tritonclient is a dev dependency, not in the image).
  $ENGINE exec "$1" python -c '
import io, os, grpc
from PIL import Image
from service.api.v2.proto import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as rpc
stub = rpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:" + os.environ["FASTAI_SERVE_GRPC_PORT"]))
assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
png = io.BytesIO(); Image.new("RGB", (32, 32), (200, 40, 40)).save(png, "PNG")
request = pb.ModelInferRequest(model_name="cifar10")
request.inputs.add(name="image", datatype="BYTES", shape=[1]).contents.bytes_contents.append(png.getvalue())
answer = stub.ModelInfer(request, timeout=30)
print("gRPC:", [o.name for o in answer.outputs], len(answer.raw_output_contents), "raw outputs")
' || die "gRPC in the container"
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
  if [ "$MODE" = ray ]; then
    "${COMPOSE[@]}" --profile ray down -v >/dev/null 2>&1 || true
    return
  fi
  $ENGINE rm -f "$NAME" >/dev/null 2>&1 || true
  FASTAI_SERVE_HOST_PORT=$PORT "${COMPOSE[@]}" --profile public down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT
project=(--filter label=com.docker.compose.project=fastai-serve)

# --- --ray: the compose ray profile ------------------------------------------------------------------
# ray-head starts Ray's head and `fastai-serve serve --ray auto` (the app deployed onto the cluster,
# served by Ray Serve's proxy); ray-worker joins. Only those two services: the plain api stays off.
check_ray() {
  local head=$1 worker=$2 started=$SECONDS headers
  wait_ready 420 || die "/health/ready through Ray Serve not 200 after 420 s"
  echo "ready after $((SECONDS - started)) s: $(curl -fsS "$BASE/health/ready")"
  nodes=$($ENGINE exec "$head" python -c 'import ray; ray.init(address="auto", logging_level="ERROR", log_to_driver=False); print(sum(n["Alive"] for n in ray.nodes()))' 2>/dev/null | tail -1)
  echo "ray nodes alive: $nodes"
  [ "$nodes" = 2 ] || die "the worker did not join the head"
  echo "serve status:"; $ENGINE exec "$head" serve status | sed 's/^/  /' || die "serve status"
  headers=$(mktemp)
  predict_demo_models "$headers"
  for kind in tabular vision; do
    served_by=$(grep -i '^x-served-by:' "$headers.$kind" | tr -d '\r') || die "no X-Served-By on the $kind answer"
    echo "$kind $served_by"
  done
  rm -f "$headers" "$headers".*
  if [ "$ENGINE" = podman ]; then
    $ENGINE healthcheck run "$head" && echo "head healthcheck: healthy" || die "head healthcheck failed"
    $ENGINE healthcheck run "$worker" && echo "worker healthcheck: healthy" || die "worker healthcheck failed"
  fi
}

if [ "$MODE" = ray ]; then
  log "build $RAY_IMAGE (EXTRAS=ray) with $ENGINE"
  started=$SECONDS
  $ENGINE build "${engine_build_flags[@]}" "${build_args[@]}" --build-arg EXTRAS=ray \
    -f docker/Dockerfile -t "$RAY_IMAGE" .
  echo "build: $((SECONDS - started)) s"
  echo "image size: $($ENGINE image inspect -f '{{.Size}}' "$RAY_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
  log "compose --profile ray up ray-head ray-worker with ${COMPOSE[*]}"
  export FASTAI_SERVE_RAY_HOST_PORT=$PORT FASTAI_SERVE_RAY_IMAGE_TAG=${RAY_IMAGE#*:}
  export RAY_DASHBOARD_HOST_PORT=${RAY_DASHBOARD_HOST_PORT:-18265}
  "${COMPOSE[@]}" --profile ray up -d ray-head ray-worker   # the image is there: nothing to build
  head=$($ENGINE ps -q "${project[@]}" --filter label=com.docker.compose.service=ray-head | head -1)
  worker=$($ENGINE ps -q "${project[@]}" --filter label=com.docker.compose.service=ray-worker | head -1)
  [ -n "$head" ] && [ -n "$worker" ] || die "ray-head or ray-worker did not start"
  echo "containers: $($ENGINE ps "${project[@]}" --format '{{.Names}} ({{.Status}}, {{.Ports}})' | tr '\n' ' ')"
  check_ray "$head" "$worker" || { "${COMPOSE[@]}" --profile ray logs | tail -60; die "ray profile checks"; }
  echo "dashboard on loopback: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RAY_DASHBOARD_HOST_PORT/api/gcs_healthz")"
  echo "SMOKE OK (ray profile)"
  exit 0
fi

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
  $ENGINE run -d --name "$NAME" --network host -e "FASTAI_SERVE_PORT=$PORT" \
    -e "FASTAI_SERVE_GRPC_PORT=${SMOKE_GRPC_PORT:-18081}" "$IMAGE" >/dev/null
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
api=$($ENGINE ps -q "${project[@]}" --filter label=com.docker.compose.service=api | head -1)
[ -n "$api" ] || die "no api container"
echo "containers: $($ENGINE ps "${project[@]}" --format '{{.Names}} ({{.Status}}, {{.Ports}})' | tr '\n' ' ')"
check_api "$api" || { "${COMPOSE[@]}" logs api | tail -30; die "compose checks"; }
echo "models in the compose volume: $($ENGINE exec "$api" ls /app/model_store | tr '\n' ' ')"
echo "volumes: $($ENGINE volume ls --format '{{.Name}}' | grep fastai-serve | tr '\n' ' ')"

# --- 3. compose --profile public ---------------------------------------------------------------------
# With NGROK_AUTHTOKEN set: the real ngrok image and a real tunnel, checked end to end. Without one (or no
# registry, as on machines with only a local base image): the stand-in agent of tests/fixtures/ngrok/
# fake-agent, which reads its --traffic-policy-file as the agent does and serves a recorded /api/tunnels
# on :4040: that proves the wiring (profile, share-policy before the agent, the shared policy volume,
# service name, port, api->agent, the sidecar's fixed address).
service_container() {  # $1 = compose service name; also stopped ones
  $ENGINE ps -a -q "${project[@]}" --filter "label=com.docker.compose.service=$1" | head -1
}
if [ "${SKIP_PUBLIC:-0}" != 1 ]; then
  if [ -n "${NGROK_AUTHTOKEN:-}" ]; then
    log "compose --profile public with the real ngrok agent"
    expected=https://
  else
    log "compose --profile public with the stand-in ngrok agent (tests/fixtures/ngrok/fake-agent; no token here)"
    $ENGINE build -q -t localhost/fastai-serve-fake-ngrok:smoke \
      -f tests/fixtures/ngrok/fake-agent/Containerfile tests/fixtures/ngrok >/dev/null
    export NGROK_IMAGE=localhost/fastai-serve-fake-ngrok:smoke
    expected=$(python3 -c 'import json; print(json.load(open("tests/fixtures/ngrok/api_tunnels_v3.json"))["tunnels"][0]["public_url"])')
  fi
  # 3a. Nothing says how visitors sign in: share-policy refuses, the agent never opens a tunnel.
  NGROK_OAUTH_PROVIDER='' NGROK_OAUTH_ALLOW_EMAILS='' NGROK_OAUTH_ALLOW_DOMAINS='' NGROK_BASIC_AUTH='' \
    NGROK_ALLOW_ANONYMOUS='' "${COMPOSE[@]}" --profile public up -d \
    && echo "(compose up returned 0; checking the containers)" || echo "compose up refused, as it should"
  deadline=$((SECONDS + 120))
  until policy=$(service_container share-policy) && [ -n "$policy" ] \
      && [ "$($ENGINE inspect -f '{{.State.Status}}' "$policy")" = exited ]; do
    [ $SECONDS -lt $deadline ] || die "share-policy did not run"; sleep 2
  done
  code=$($ENGINE inspect -f '{{.State.ExitCode}}' "$policy")
  $ENGINE logs "$policy" 2>&1 | grep -q "refusing to open a public tunnel" \
    || die "share-policy without settings: no refusal in its log"
  [ "$code" = 2 ] || die "share-policy without settings exited $code, not 2"
  sleep 5  # time for an agent that should not start to fail
  if curl -fsS -m 3 "http://127.0.0.1:${NGROK_WEB_PORT:-4040}/api/tunnels" >/dev/null 2>&1; then
    die "an agent is serving although share-policy refused"
  fi
  echo "refused without a way to sign in: share-policy exit $code, no agent"

  # 3b. With one: basic auth (or what NGROK_* say), the URL and `protected` at /api/v1/share.
  # podman-compose 1.x does not recreate an agent whose share-policy failed; start 3b without either.
  for service in ngrok share-policy; do
    container=$(service_container "$service")
    [ -z "$container" ] || $ENGINE rm -f "$container" >/dev/null
  done
  if [ -z "${NGROK_OAUTH_PROVIDER:-}${NGROK_BASIC_AUTH:-}${NGROK_ALLOW_ANONYMOUS:-}" ]; then
    export NGROK_BASIC_AUTH="smoke:$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')"
  fi
  "${COMPOSE[@]}" --profile public up -d
  echo "containers: $($ENGINE ps "${project[@]}" --format '{{.Names}} ({{.Status}})' | tr '\n' ' ')"
  want_protected=null
  if [ -n "${NGROK_OAUTH_PROVIDER:-}" ]; then want_protected='"oauth"'
  elif [ -n "${NGROK_BASIC_AUTH:-}" ]; then want_protected='"basic"'; fi
  deadline=$((SECONDS + 60))
  until share=$(curl -fsS "$BASE/api/v1/share") && [[ "$share" == *"\"public_url\":\"$expected"* ]] \
      && [[ "$share" == *"\"protected\":$want_protected"* ]]; do
    [ $SECONDS -lt $deadline ] || die "no public URL protected by $want_protected from /api/v1/share: $share"
    sleep 2
  done
  echo "share (sidecar): $share"
  echo "agent API on this host: $(curl -fsS "http://127.0.0.1:${NGROK_WEB_PORT:-4040}/api/tunnels" | cut -c1-120)..."
  ngrok_ip=$($ENGINE inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$(service_container ngrok)")
  api=$(service_container api)
  trusted=$($ENGINE exec "$api" printenv FASTAI_SERVE_FORWARDED_ALLOW_IPS)
  [[ " $ngrok_ip " == *" $trusted "* ]] || die "FORWARDED_ALLOW_IPS=$trusted, but the sidecar is at $ngrok_ip"
  echo "X-Forwarded-For believed from the sidecar only: $trusted"
  if [ -n "${NGROK_AUTHTOKEN:-}" ]; then
    url=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["public_url"])' "$share")
    status=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/ready")
    echo "through the tunnel, not signed in: HTTP $status"
    if [ "$want_protected" != null ]; then
      [ "$status" != 200 ] || die "the tunnel answered 200 to a visitor who did not sign in"
    fi
    if [ -n "${NGROK_BASIC_AUTH:-}" ]; then
      echo "through the tunnel with basic auth: $(curl -fsS -u "$NGROK_BASIC_AUTH" "$url/health/ready")"
    fi
  else
    started=$(curl -fsS "http://127.0.0.1:${NGROK_WEB_PORT:-4040}/fake/started")
    python3 - "$started" "$want_protected" <<'PY' || die "the agent did not get the rendered policy"
import json, sys
started, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
args, policy = started["args"], started["traffic_policy"] or ""
assert args[:2] == ["http", "http://api:8000"], args
assert started["traffic_policy_file"] == "/app/tunnel-policy/traffic-policy.yml", started
action = {"basic": "type: basic-auth", "oauth": "type: oauth"}.get(want)
assert action is None or action in policy, policy
print("agent started with", " ".join(args), "and a policy of", len(policy), "characters")
PY
  fi
fi
echo "SMOKE OK"
