# kd — offline knowledge distillation. Every target runs `kd` stages (pipelines/kd.ts) with the
# shipped defaults; see README.md. `make precompute && make train` works after `make prep`.
# One process: `npx tsx` adds a wrapper that re-sends Ctrl-C, which cuts kd's graceful stop short.
KD := node pipelines/kd.js
export ONNXRUNTIME_NODE_INSTALL ?= skip

.PHONY: rehearse rehearse-checkpoint rehearse-corpus rehearse-stream rehearse-memory plan install prep teacher teacher-onnx teacher-precision precompute train baseline precompute-gpu train-gpu sweep eval demo techniques self-distill sampled xtok test bench clean

node_modules: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules

install: node_modules

prep: node_modules
	$(KD) prep --out runs/prep --tokenizer data/teacher/tokenizer.json --overwrite

# Retrain the default teacher (about an hour on 2 CPU cores) and ship it as fp16 to data/teacher.
teacher: prep
	$(KD) teacher train --prep runs/prep --out runs/teacher-train --max-steps 450 --warmup-steps 30 --eval-every 50 --eval-windows 128
	$(KD) teacher ship --checkpoint runs/teacher-train --out data/teacher

runs/teacher/model.onnx: data/teacher/model.safetensors data/teacher/config.json | node_modules
	$(KD) teacher export --checkpoint data/teacher --out runs/teacher/model.onnx --overwrite

teacher-onnx: runs/teacher/model.onnx

# The default teacher at fp16 and int4 (MatMulNBits, block 32), each compared with fp32 on the
# validation windows (README "Teacher precision").
teacher-precision: runs/teacher/model.onnx
	$(KD) teacher export --checkpoint data/teacher --out runs/teacher/fp16/model.onnx --dtype fp16 --overwrite
	$(KD) teacher export --checkpoint data/teacher --out runs/teacher/int4/model.onnx --dtype int4 --overwrite
	$(KD) teacher compare runs/teacher/model.onnx runs/teacher/fp16/model.onnx --prep runs/prep --device cpu
	$(KD) teacher compare runs/teacher/model.onnx runs/teacher/int4/model.onnx --prep runs/prep --device cpu

precompute: runs/teacher/model.onnx
	$(KD) precompute --config pipelines/configs/precompute.json

train: node_modules
	$(KD) train --config pipelines/configs/student.json --out runs/student --overwrite

baseline: node_modules
	$(KD) train --config pipelines/configs/student.json --alpha 0 --out runs/baseline --overwrite

# The same on a GPU machine: the teacher on CUDA, the student on @tensorflow/tfjs-node-gpu. Each
# refuses to start on a CPU (no silent fallback); install onnxruntime's CUDA binaries and
# tfjs-node-gpu first (README "Backends and devices").
precompute-gpu: runs/teacher/model.onnx
	$(KD) precompute --config pipelines/configs/precompute-gpu.json

train-gpu: node_modules
	$(KD) train --config pipelines/configs/student-gpu.json --out runs/student --overwrite

# Students over a grid of α, τ, loss and schedule from the same cached logits (runs/logits, after
# `make precompute`), 2 processes at a time; ranked table and plot in runs/sweep.
sweep: node_modules
	$(KD) sweep --config pipelines/configs/sweep.json

# The article's optimisation techniques (augmentation §5.3, hidden states §5.4, QAT §5.5) and next
# steps (ensemble of two teachers §8.1, student → teacher cascade §8.3), each
# trained against the same baseline and distilled student; report in runs/techniques (~45 min).
techniques: node_modules
	npx tsx pipelines/techniques.ts

# Self-distillation (§8.2): round r's student, exported, is round r + 1's teacher; ROUNDS rounds of
# 128 steps beside CE-only students of the same total steps (~20 min for 3). Report in runs/self-distill.
ROUNDS ?= 3
self-distill: node_modules
	npx tsx pipelines/self-distill.ts --rounds $(ROUNDS)

# Cross-tokenizer distillation: a student with its own 2048-entry BPE learns from the shipped
# teacher by ULD at byte-aligned positions + CE, beside its CE-only baseline (~25 min). Report in runs/xtok.
xtok: node_modules
	npx tsx pipelines/xtok.ts

eval: node_modules
	$(KD) eval --teacher runs/teacher/model.onnx --baseline runs/baseline --distilled runs/student --data runs/logits --out runs/eval --overwrite

# Random-sampling KD (n = 12 draws per position) against top-k at the same slots and at equal bytes,
# and the compact codec's cost in perplexity; 8 students of 128 steps (~25 min). Report in runs/sampled.
sampled: node_modules
	npx tsx pipelines/sampled.ts

demo: node_modules
	npx tsx pipelines/demo.ts

test: node_modules
	npx vitest run

bench: node_modules
	npx tsx scripts/bench.ts

clean:
	rm -rf runs

# Rehearsal at the article's size (README "Checkpoints of any size"): a random TinyLlama-1.1B-shaped
# BF16 checkpoint written sharded, loaded, saved back sharded in BF16 (bit for bit) and F32,
# exported to ONNX with external data and run once; prints seconds and peak RSS of each step.
# About 14 GB of disk under runs/rehearse at the peak, ~10 GB of RAM.
rehearse-checkpoint: node_modules
	node --import tsx scripts/rehearse-checkpoint.ts --out runs/rehearse

# Corpus rehearsal (README "Corpora of any size"): a generated 1 GB JSONL corpus prepared by kd prep with
# the shipped tokenizer, then BPE training on a seeded sample; prints seconds, tokens/s and peak RSS
# (goal < 1.5 GB). About 2 GB of disk under runs/rehearse/corpus; ~40 min on 2 busy cores.
rehearse-corpus: node_modules
	node --import tsx scripts/rehearse-corpus.ts --out runs/rehearse/corpus

# Streaming rehearsal (README "Logit data streamed"): peak RSS of kd train on 1/8, 1/2 and all of
# the demo's logit dataset and on a generated 10 M-position one (~1.1 GB under runs/stream-rss);
# the goal is max/min < 1.1. Builds runs/prep and runs/logits first when they are missing.
runs/prep/windows.json: | node_modules
	$(KD) prep --out runs/prep --tokenizer data/teacher/tokenizer.json

runs/logits/manifest.json: runs/prep/windows.json runs/teacher/model.onnx
	$(KD) precompute --config pipelines/configs/precompute.json

rehearse-stream: runs/logits/manifest.json
	node --import tsx scripts/stream-rss.ts

# Memory rehearsal (README "Memory of training"): a student of TinyLlama's width and vocabulary
# with 2 layers trains 3 steps at L = 512 on the CPU backend that holds it (~75 min on one core),
# its measured peak against the memory plan.
rehearse-memory: node_modules
	node --import tsx scripts/rehearse-memory.ts

rehearse: rehearse-checkpoint rehearse-corpus rehearse-stream rehearse-memory

# The memory plan of TinyLlama-1.1B and Llama-3.2-1B students (README "Memory of training").
plan: node_modules
	$(KD) plan --model test/fixtures/hub-configs/TinyLlama-1.1B-config.json --seq-len 2048 --batch-size 1
	node --import tsx scripts/plan-figures.ts
