#!/usr/bin/env bash
# Create one virtualenv per peer library under benchmarks/work/peers/<peer>/venv (git ignores
# benchmarks/work/). torch is pinned first (torch==2.13.0 takes the local CPU wheel; any other torch
# requirement would pull a CUDA build). A peer whose package lists torchvision / torchaudio /
# bitsandbytes (GPU or vision extras none of these benchmarks touch; their PyPI builds drag in the
# CUDA libraries) is installed with --no-deps plus its other requirements, listed below. A peer that
# fails to install is reported and skipped; the benchmark runs the peers that did install.
#
#   bash benchmarks/peers/setup_envs.sh [peer ...]     # default: all five peers
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$ROOT/benchmarks/work/peers"
PY="${PYTHON:-python3}"
COMMON="transformers>=4.46 safetensors numpy scipy"
declare -A SPEC=(
  [kronfluence]="--no-deps kronfluence==1.0.1"
  [bergson]="--no-deps bergson==2.5.1"
  [dattri]="dattri==0.3.0"
  [captum]="captum==0.9.0"
  [traker]="traker==0.3.2"
)
declare -A DEPS=(
  [kronfluence]="accelerate>=0.31 einops>=0.8 einconv>=0.1 opt-einsum>=3.3 tqdm"
  [bergson]="accelerate datasets jinja2 jaxtyping>=0.3.3 ml_dtypes natsort peft>=0.17 petname pyarrow pyyaml simple-parsing torchopt huggingface-hub>=1.13"
  [dattri]=""
  [captum]=""
  [traker]=""
)
declare -A IMPORT=([kronfluence]=kronfluence [bergson]=bergson [dattri]=dattri [captum]=captum [traker]=trak)
PEERS=("$@")
[ ${#PEERS[@]} -eq 0 ] && PEERS=(kronfluence dattri captum traker bergson)
mkdir -p "$WORK"
for peer in "${PEERS[@]}"; do
  env="$WORK/$peer/venv"
  log="$WORK/$peer/install.log"
  mkdir -p "$WORK/$peer"
  if [ -x "$env/bin/python" ] && "$env/bin/python" -c "import ${IMPORT[$peer]}" 2>/dev/null; then
    echo "$peer: ready ($env)"; continue
  fi
  echo "$peer: installing into $env (log: $log)"
  {
    "$PY" -m venv "$env" &&
    "$env/bin/pip" install -q "torch==2.13.0" &&
    "$env/bin/pip" install -q ${SPEC[$peer]} &&
    "$env/bin/pip" install -q $COMMON ${DEPS[$peer]}
  } >"$log" 2>&1
  if "$env/bin/python" -c "import ${IMPORT[$peer]}" >>"$log" 2>&1; then
    echo "$peer: installed $("$env/bin/pip" show "$peer" 2>/dev/null | grep ^Version)"
  else
    echo "$peer: FAILED (see $log)"
  fi
done
