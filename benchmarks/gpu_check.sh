#!/usr/bin/env bash
# rsgan's CUDA checks in one run, for a machine with a GPU and PyTorch built for CUDA but
# without rsgan's geospatial packages (the workplace's lent GPU machines; docs/benchmarks.md,
# "GPU checks"). On such a machine, from the repository root:
#
#   make gpu-wheels                 # beforehand, where PyPI is reachable: rasterio & co. in .whl/
#   bash benchmarks/gpu_check.sh    # installs .whl/ if present, tests, benchmarks
#
# Writes to $OUT (or gpu-check/): versions.txt, nvidia-smi.txt, tests.log, bench.log,
# bench_gpu.jsonl. Exit status: non-zero when the tests or the benchmark failed.
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/rsgan-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/rsgan-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python3 - <<'PY' 2>&1 | tee "$out/versions.txt"
import rasterio, torch
import rsgan
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "| cuda", cuda, "|", torch.cuda.get_device_name() if cuda else "-",
      "| rasterio", rasterio.__version__, "| GDAL", rasterio.__gdal_version__, "| rsgan", rsgan.__file__)
PY
# the GPU tests, then the suites whose translate_raster(device="auto") and training calls
# run on CUDA there (those that need pyogrio, pystac or dask are left out: not carried)
timeout 330 python3 -m pytest -p no:cacheprovider -q -m "not slow" --timeout 240 \
  tests/test_gpu.py tests/test_translate.py tests/test_seams.py tests/test_mosaic.py \
  tests/test_training.py tests/test_checkpoint.py tests/models tests/test_augment.py \
  tests/cli/test_translate.py tests/cli/test_train.py 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
timeout 200 python3 benchmarks/bench_gpu.py --out "$out/bench_gpu.jsonl" 2>&1 | tee "$out/bench.log"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, benchmark exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
