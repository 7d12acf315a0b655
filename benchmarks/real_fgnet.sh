#!/usr/bin/env bash
# The real results track (README "On real faces"): the whole real FG-NET (1,002 photographs,
# 82 subjects) and the real MobileFaceNet CASIA-WebFace checkpoint, read from ../shared/reference
# (never copied into the repository), under leave-one-person-out on this machine's CPU.
# Writes results/real-fgnet-*/ (one folder per configuration), their paired comparison with the
# default (mode a, aligned faces) and the regressors on pooled features.  Run from the
# repository root after `pip install -e .`; CASCADE_HOME as for regenerate_results.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
REF="${CASCADE_REFERENCE:-../shared/reference}"
C=".venv/bin/cascade"
if [ ! -d "$REF/fgnet/images" ] || [ ! -f "$REF/weights/mobilefacenet_casia_068.ckpt" ]; then
    echo "real FG-NET or the MobileFaceNet checkpoint is missing under $REF: the real track is skipped"
    exit 0
fi
export CASCADE_HOME="${CASCADE_HOME:-$(mktemp -d /tmp/cascade-real.XXXXXX)}"
echo "store: $CASCADE_HOME"
# The checkpoint is a legacy pickled torch.save file: converted once (weights_only), sha256 recorded.
[ -f "$CASCADE_HOME/weights/mobilefacenet_casia.safetensors" ] || \
    $C weights import "$REF/weights/mobilefacenet_casia_068.ckpt" --format mobilefacenet-ckpt --name mobilefacenet_casia
R="stage= target=fgnet backbone=mobilefacenet data.root.fgnet=$REF/fgnet"
mkdir -p results/benchmarks
timed() {   # timed NAME SETTINGS...: one configuration, its wall time kept beside its folder
    local name=$1; shift
    local start=$SECONDS
    $C run $R run.name=$name "$@" --quiet
    echo "$name: $((SECONDS - start)) s wall on $(nproc) cores ($*)" | tee -a results/benchmarks/real_fgnet_time.txt
}
rm -f results/benchmarks/real_fgnet_time.txt
# Mode a (the head on the frozen network), with the face aligned onto MobileFaceNet's template
# (data.crop=auto does that for this backbone) and with the 40 % margin box of the thesis.
timed real-fgnet-align data.crop=align
timed real-fgnet-margin data.crop=mtcnn
# The same head on a randomly initialised network: what the face-recognition weights are worth.
timed real-fgnet-random data.crop=align weights=none
# Beyond the head: the top layers fine-tuned above a cached cut (cascade/train/cut.py).
PARTIAL="data.crop=align train.mode=full train.cut_cache=true"
timed real-fgnet-partial7 $PARTIAL train.trainable_layers=7
timed real-fgnet-partial7-seeds $PARTIAL train.trainable_layers=7 seeds=0,1,2
$C compare results/real-fgnet-align-* results/real-fgnet-margin-* results/real-fgnet-random-* \
    results/real-fgnet-partial7-fgnet-* --out results
# the three-seed partial fine-tuning against the default (each image's error averaged over seeds)
$C compare results/real-fgnet-align-* results/real-fgnet-partial7-seeds-* --out results
# Thesis Table 5 on real faces: pooled features of the pretrained network into regressors.
for engine in ridge svr; do
    $C regress pretrained $R data.crop=align engine=$engine modes=last:max --quiet
done
