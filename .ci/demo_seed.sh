#!/usr/bin/env bash
# make demo-seed: build the mini dataset, serve it on 127.0.0.1, download it, build the TFRecords,
# train DELF and DELG briefly, export them, extract and match two images of one landmark,
# and evaluate DELG retrieval on the downloaded test queries against the index.
set -euo pipefail
delf=$(realpath "${1:-$(command -v delf)}")
demo_dir=${2:-.demo}

# preset NAME MODEL_PATH SCORE_THRESHOLD OUT: writes the DelfConfig the product ships as
# NAME (delf_core/features/presets: the seed README's and the DELG instructions') for
# the export MODEL_PATH, with another attention threshold.
preset() {
  "$(dirname "$delf")/python" -c 'import sys
from delf_core.features import write_delf_config
from delf_core.features.presets import load_preset
write_delf_config(load_preset(sys.argv[1], sys.argv[2], float(sys.argv[3])), sys.argv[4])' "$@"
}

rm -rf "$demo_dir"
mkdir -p "$demo_dir"
"$delf" make_mini_dataset --output_dir="$demo_dir/mirror"

"$delf" serve_mirror --root="$demo_dir/mirror" --port=0 >"$demo_dir/mirror.log" 2>&1 &
mirror_pid=$!
trap 'kill $mirror_pid 2>/dev/null || true' EXIT
# The mirror prints its URL once it listens; a busy machine may take a while to get there.
mirror_wait=${MIRROR_START_SECONDS:-300}
deadline=$(( $(date +%s) + mirror_wait ))
url=""
while [ -z "$url" ] && [ "$(date +%s)" -lt "$deadline" ] && kill -0 $mirror_pid 2>/dev/null; do
  url=$(grep -o 'http://[0-9.:]*' "$demo_dir/mirror.log" || true)
  [ -n "$url" ] || sleep 0.2
done
[ -n "$url" ] || {
  echo "the mirror did not start within ${mirror_wait} s (MIRROR_START_SECONDS):"
  cat "$demo_dir/mirror.log"
  exit 1
}
echo "mirror at $url"

"$delf" download 2 1 1 --base_url="$url" --output_dir="$demo_dir/gldv2_dataset"
echo "a rerun finds everything done:"
"$delf" download 2 1 1 --base_url="$url" --output_dir="$demo_dir/gldv2_dataset"
images=$(find "$demo_dir/gldv2_dataset" -name '*.jpg' | wc -l)
echo "demo: $images images under $demo_dir/gldv2_dataset/{train,index,test}"

echo "the seed's build_image_dataset command, unchanged, on what was downloaded:"
cd "$demo_dir"
"$delf" build_image_dataset \
  --train_csv_path=gldv2_dataset/train/train.csv \
  --train_clean_csv_path=gldv2_dataset/train/train_clean.csv \
  --train_directory=gldv2_dataset/train/*/*/*/ \
  --output_directory=gldv2_dataset/tfrecord/ \
  --num_shards=128 \
  --generate_train_validation_splits \
  --validation_split_size=0.2
echo "and with the test split:"
"$delf" build_image_dataset \
  --train_csv_path=gldv2_dataset/train/train.csv \
  --train_clean_csv_path=gldv2_dataset/train/train_clean.csv \
  --train_directory=gldv2_dataset/train/*/*/*/ \
  --test_csv_path=gldv2_dataset/train/test.csv \
  --test_directory=gldv2_dataset/test/*/*/*/ \
  --output_directory=gldv2_dataset/tfrecord/ \
  --num_shards=128 \
  --generate_train_validation_splits \
  --validation_split_size=0.2
echo "demo: $(ls gldv2_dataset/tfrecord | grep -c -- '-of-') shards in $demo_dir/gldv2_dataset/tfrecord"

echo "the seed's training commands, with a small --max_iters and --image_size:"
# The ImageNet file cannot be downloaded here: an untrained Keras ResNet50 written in its
# format stands in for it, so the loading code runs.
"$(dirname "$delf")/python" - <<'PY'
import h5py
import keras
from keras.src.legacy.saving import legacy_h5_format

model = keras.applications.ResNet50(weights=None, include_top=False)
with h5py.File("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "w") as handle:
    legacy_h5_format.save_weights_to_hdf5_group(handle, model)
PY
"$delf" train \
  --train_file_pattern=gldv2_dataset/tfrecord/train* \
  --validation_file_pattern=gldv2_dataset/tfrecord/validation* \
  --imagenet_checkpoint=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 \
  --dataset_version=gld_v2_clean \
  --logdir=gldv2_training/ \
  --max_iters=2 --image_size=64 --batch_size=4 --num_eval_batches=1
"$delf" train \
  --train_file_pattern=gldv2_dataset/tfrecord/train* \
  --validation_file_pattern=gldv2_dataset/tfrecord/validation* \
  --imagenet_checkpoint=resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 \
  --dataset_version=gld_v2_clean \
  --logdir=gldv2_training_delg/ \
  --delg_global_features \
  --max_iters=2 --image_size=64 --batch_size=4 --num_eval_batches=1
echo "demo: checkpoints in $demo_dir/gldv2_training and $demo_dir/gldv2_training_delg"

echo "the seed's export commands, on the two trained models:"
# Exports refuse to overwrite: the previous demo's are removed first, so this section
# also reruns on its own (the top of the script clears the whole demo folder anyway).
rm -rf gldv2_model_local gldv2_model_local_and_global gldv2_model_global \
  gldv2_model_global_kaggle data/features matched_images.png
"$delf" export_local_model \
  --ckpt_path=gldv2_training/delf_weights \
  --export_path=gldv2_model_local
"$delf" export_local_and_global_model \
  --ckpt_path=gldv2_training_delg/delf_weights \
  --export_path=gldv2_model_local_and_global \
  --delg_global_features
"$delf" export_global_model \
  --ckpt_path=gldv2_training_delg/delf_weights \
  --export_path=gldv2_model_global \
  --delg_global_features
echo "and in the Kaggle format (fixed scales, pooled, normalised):"
"$delf" export_global_model \
  --ckpt_path=gldv2_training_delg/delf_weights \
  --export_path=gldv2_model_global_kaggle \
  --delg_global_features \
  --input_scales_list=0.70710677,1.0,1.4142135 \
  --multi_scale_pool_type=sum \
  --normalize_global_descriptor

echo "testing the trained model: extract two images of one landmark, match them"
# The seed README's test config for a TF2 local export, but one threshold: attention
# after 2 training steps sits near softplus(0) = 0.69 everywhere, so the seed's 100.0
# (for a fully trained model) would keep no feature.
preset delf_config_example.pbtxt gldv2_model_local 0.5 delf_config_example.pbtxt
cat delf_config_example.pbtxt
# Two views of the first landmark of train_clean.csv (landmark_id,images).
read -r a b _ < <(sed -n 2p gldv2_dataset/train/train_clean.csv | cut -d, -f2)
image() { echo "gldv2_dataset/train/${1:0:1}/${1:1:1}/${1:2:1}/$1.jpg"; }
printf '%s\n' "$(image "$a")" "$(image "$b")" >list_images.txt
"$delf" extract_features \
  --config_path delf_config_example.pbtxt \
  --list_images_path list_images.txt \
  --output_dir data/features
"$delf" match_images \
  --image_1_path "$(image "$a")" \
  --image_2_path "$(image "$b")" \
  --features_1_path "data/features/$a.delf" \
  --features_2_path "data/features/$b.delf" \
  --output_image matched_images.png
echo "demo: exports $(echo gldv2_model_*), features in $demo_dir/data/features," \
  "picture $demo_dir/matched_images.png"

echo "the DELG instructions' retrieval evaluation: the test queries against the index"
# As above: the previous demo's outputs go first, so this section reruns on its own.
rm -rf gnd_mini.pkl delg_config.pbtxt data/mini_features results/mini
"$delf" make_revisited_ground_truth --dataset_dir=gldv2_dataset --output_path=gnd_mini.pkl
# The DELG configs (delg_gld_config.pbtxt, ...) for a TF2 export, but one threshold:
# theirs (175 to 454.6) fits a fully trained model, and attention after 2 training steps
# sits near softplus(0) = 0.69, so they would keep no local feature and geometric
# verification would have nothing to match.
preset delg_config.pbtxt gldv2_model_local_and_global 0.5 delg_config.pbtxt
"$delf" extract_features \
  --delf_config_path delg_config.pbtxt \
  --dataset_file_path gnd_mini.pkl \
  --images_dir gldv2_dataset/test \
  --image_set query \
  --output_features_dir data/mini_features/query
"$delf" extract_features \
  --delf_config_path delg_config.pbtxt \
  --dataset_file_path gnd_mini.pkl \
  --images_dir gldv2_dataset/index \
  --image_set index \
  --output_features_dir data/mini_features/index
"$delf" perform_retrieval \
  --dataset_file_path gnd_mini.pkl \
  --query_features_dir data/mini_features/query \
  --index_features_dir data/mini_features/index \
  --use_geometric_verification \
  --output_dir results/mini
# hard is nan: every positive of the mini benchmark is easy, so no query has a hard one.
echo "demo: $demo_dir/results/mini/metrics.txt:"
cat results/mini/metrics.txt
