#!/usr/bin/env bash
# The pictures in docs/mlflow/: what MLflow shows of a finished main command's results folder.
#   docs/mlflow/screenshots.sh RESULTS [OUT]
# Starts `mlflow server` on loopback over RESULTS/mlflow.db, opens in headless Chromium the
# experiment list, the main study's runs table in its shared headline view (what `moleflow track
# init` prints) and one run's page, and writes them as PNGs to OUT (default docs/mlflow).
set -euo pipefail
results=$(cd "$1" && pwd)
out=${2:-$(dirname "$0")}
mkdir -p "$out"
browser=$(command -v chromium || command -v chromium-browser)
port=5123
server="http://127.0.0.1:$port"
mlflow server --backend-store-uri "sqlite:///$results/mlflow.db" --host 127.0.0.1 --port "$port" \
  --workers 1 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "$server/health" >/dev/null && break; sleep 1; done
id=$(python - "$server" <<'EOF'
import json, sys, urllib.parse, urllib.request
from moleflow.tracking.mlflow_log import experiment_name
url = f"{sys.argv[1]}/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + urllib.parse.quote(experiment_name("main", "synth"))
print(json.load(urllib.request.urlopen(url))["experiment"]["experiment_id"])
EOF
)
run=$(python - "$server" "$id" <<'EOF'
import json, sys, urllib.request
body = json.dumps({"experiment_ids": [sys.argv[2]], "filter": "tags.variant = 'MoLE-Flow'", "max_results": 1}).encode()
req = urllib.request.Request(f"{sys.argv[1]}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["runs"][0]["info"]["run_id"])
EOF
)
view=$(python -c "from moleflow.tracking.mlflow_log import experiment_url; print(experiment_url('$server', '$id'))")
shoot() {
  "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
    --user-data-dir="$(mktemp -d)" --window-size=2000,1000 --virtual-time-budget=30000 \
    --screenshot="$out/$1" "$2" >/dev/null 2>&1
}
shoot experiments.png "$server/#/experiments?workflowType=machine_learning"
shoot runs.png "$view"
shoot run.png "$server/#/experiments/$id/runs/$run?workflowType=machine_learning"
echo "wrote $out/experiments.png $out/runs.png $out/run.png"
