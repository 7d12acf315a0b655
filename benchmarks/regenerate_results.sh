#!/usr/bin/env bash
# Rebuild every folder of results/ with the current code, in one store, in dependency order.
# Run from the repository root after `pip install -e .`; each folder's run.json records the
# commit it was made at (and whether the tree was dirty).  Over an hour on 2 cores, most of it
# the three-seed demo.  CASCADE_HOME defaults to a fresh folder so nothing cached by older code
# is reused (stage keys already refuse that; a fresh store also measures the full work).
set -euo pipefail
cd "$(dirname "$0")/.."
export CASCADE_HOME="${CASCADE_HOME:-$(mktemp -d /tmp/cascade-results.XXXXXX)}"
C=".venv/bin/cascade"
S=configs/studies
echo "store: $CASCADE_HOME"
# Folders made by older code go: every folder below is made anew (git keeps the old ones).
find results -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +

mkdir -p results/benchmarks
# README line 1 (timed: the store is fresh, so this includes generating the demo suite; portable
# numerics: the same keys and numbers on any x86-64 CPU), then the main job at the default native
# numerics (whose stages the analyses, predict and export below reuse) and its three-seed version.
start=$SECONDS
readme=$($C run stage=imdb,agedb target=fgnet train.numerics=portable --quiet | sed -n 's|^written to \(.*\)/$|\1|p')
echo "README line 1 (cascade run stage=imdb,agedb target=fgnet train.numerics=portable, fresh store, demo suite generated): $((SECONDS - start)) s on $(nproc) cores" \
    | tee results/benchmarks/demo_time.txt
main=$($C run stage=imdb,agedb target=fgnet --quiet | sed -n 's|^written to \(.*\)/$|\1|p')
$C run stage=imdb,agedb target=fgnet seeds=0,1,2 --quiet
# Both rebuilt from scratch in a temporary store and compared with their folders
# (docs/reliability.md "Same numbers on another machine").
for run in "$readme:verify_readme" "$main:verify_native"; do
    { echo "# cascade verify ${run%%:*} --quiet, on $(nproc) cores of $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
      $C verify "${run%%:*}" --quiet; } | tee "results/benchmarks/${run##*:}.txt"
done
# How much the numbers move with the threads per fold (--jobs 1 vs --jobs 2).
.venv/bin/python benchmarks/jobs_effect.py --home "$CASCADE_HOME" stage=imdb,agedb target=fgnet \
    | tee results/benchmarks/jobs_effect.txt
# The leakage audit (docs/data.md "Overlap between datasets"): the main job with the overlap it
# found removed from its earlier stages, and whole-dataset audits of the demo suite's pairs.
$C run stage=imdb,agedb target=fgnet data.exclude_overlap=both run.name=exclude-overlap --quiet
$C compare "$main" results/exclude-overlap-fgnet-demo-* --out results
mkdir -p results/overlap-demo
for pair in "imdb agedb" "imdb wiki" "agedb fgnet" "imdb fgnet"; do
    set -- $pair
    $C data overlap $1 $2 --out results/overlap-demo/$1-$2.csv | tee results/overlap-demo/$1-$2.txt
done
.venv/bin/python benchmarks/overlap.py --home "$CASCADE_HOME" | tee results/benchmarks/overlap.txt
# The analyses of thesis section 6 and Table 5 (they reuse the main job's stages).
$C regress pretrained imdb,agedb engine=ridge modes=last:max,first:max,last:none --quiet
$C analyse distributions --quiet
$C analyse groups --quiet
$C analyse subjects --quiet
$C analyse subjects balance.sampler=oversample --quiet
$C analyse subjects balance.weights=inverse --quiet
$C explain cam --quiet
# The related studies on the demo suite (README "The related studies as configurations").
$C run $S/000-utkface-efficientnet.yaml backbone=demo weights=none --quiet
$C run $S/000-utkface-efficientnet.yaml backbone=demo weights=none balance.sampler=none --quiet
$C run $S/000-utkface-efficientnet.yaml backbone=demo weights=none balance.sampler=none balance.weights=none --quiet
$C run $S/001-utkface-resnet50-frozen.yaml backbone=demo weights=none --quiet
$C run $S/002-utkface-100-classes.yaml --quiet
$C run $S/003-wiki-vgg19.yaml backbone=demo weights=none --quiet
$C run $S/003-wiki-vgg19.yaml backbone=timm:resnet10t weights=none backbones.timm.input_size=40 train.epochs=6 \
    train.lr=0.002 train.trainable_layers=null train.unfreeze=null --quiet
$C ensemble results/study-003-wiki-demo-* results/study-003-wiki-timm-resnet10t-* --stack
# Three backbones on the same folds (head-only on random-init bodies: the demo has no
# face-recognition weights), compared with paired tests and a critical-difference figure.
for b in demo timm:resnet10t timm:mobilenetv3_small_050; do
    $C run stage= target=fgnet seeds=0,1,2 backbone=$b weights=none backbones.timm.input_size=40 run.name=backbones --quiet
done
$C compare results/backbones-fgnet-demo-* results/backbones-fgnet-timm-resnet10t-* \
    results/backbones-fgnet-timm-mobilenetv3_small_050-* --out results
# What data.crop=align does to faces (MTCNN on the demo suite; landmarks of the real reference
# photographs when ../shared/reference is present).
.venv/bin/python benchmarks/align_check.py --home "$CASCADE_HOME" | tee results/benchmarks/align.txt
# Fold-parallel speed (README "Folds in parallel"), on its own scratch store.
.venv/bin/python benchmarks/lopo_scaling.py | tee results/benchmarks/lopo_scaling.txt
# cascade predict and export on the demo cascade (docs/predict-and-export.md; its stages are the
# main job's): the real AgeDB photographs where ../shared/reference is present.  The exported
# model file is not kept, its sidecar is.
mkdir -p results/predict-demo
if [ -d ../shared/reference/faces/agedb ]; then
    $C predict imdb,agedb ../shared/reference/faces/agedb --out results/predict-demo/agedb.csv --quiet \
        | tee results/predict-demo/predict.txt
fi
$C export imdb,agedb --format onnx --out results/predict-demo/imdb-agedb.onnx --quiet | tee results/predict-demo/export.txt
rm results/predict-demo/imdb-agedb.onnx
# Where cascade predict's time goes on this CPU (detection + crop + model against the model alone).
.venv/bin/python benchmarks/predict_throughput.py | tee results/benchmarks/predict_throughput.txt
# What one feeding thread delivers from the memory-mapped cache (docs/performance.md "On GPUs").
# The GPU machine's outputs (results/benchmarks/*_h200.txt) come from benchmarks/gpu_check.sh there.
{ echo "# benchmarks/feed_rate.py --seconds 3 on this project's 2-core CPU machine"
  .venv/bin/python benchmarks/feed_rate.py --seconds 3; } | tee results/benchmarks/feed_rate.txt
# The real results track (README "On real faces": real FG-NET and MobileFaceNet from
# ../shared/reference, skipped without it) in the same store, then what each way of training
# costs per fold on it.
bash benchmarks/real_fgnet.sh
if [ -d ../shared/reference/fgnet/images ]; then
    .venv/bin/python benchmarks/fold_rate.py | tee results/benchmarks/fold_rate.txt
    # Duplicate recall on planted copies of real photographs (docs/data.md "Overlap between datasets").
    .venv/bin/python benchmarks/duplicate_recall.py | tee results/benchmarks/duplicate_recall.txt
fi
# Last, from the folders' files alone: a static report.html beside each folder above and
# results/index.html over them all (README, after the list of a results folder's files).
$C html
