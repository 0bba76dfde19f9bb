# Sourced by bench/run.sh and bench/setup-peers.sh: makes the CUDA-built PyPI
# torch wheel load on a CPU-only machine (CUDA libraries it links resolve from
# /usr/local/cuda-13.0 where present) and pins the peers to 2 threads.
for d in /usr/local/cuda-13.0/lib64 /usr/local/cuda-13.0/targets/x86_64-linux/lib; do
    [ -d "$d" ] && case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}";; esac
done
export LD_LIBRARY_PATH
export OMP_NUM_THREADS="${BENCH_THREADS:-2}" MKL_NUM_THREADS="${BENCH_THREADS:-2}"
