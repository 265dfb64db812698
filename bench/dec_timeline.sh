bash scripts/device-cuda.sh build synthbg waitsynth > $OUT/setup.log 2>&1; tail -2 $OUT/setup.log
python3 bench/dec_timeline.py /tmp/coder30b.gguf 0 16 --json $OUT/tl0.json 2>&1 | tail -20
python3 bench/dec_timeline.py /tmp/coder30b.gguf 4096 16 --json $OUT/tl4096.json 2>&1 | tail -20

