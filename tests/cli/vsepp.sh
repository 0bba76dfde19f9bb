# VSE++ end to end through the command line, at a small size: compile
# models/vsepp.ir, initialise, encode images and captions, score them.
source "$(dirname "$0")/lib.bash" "$@"
P=$TMP/vsepp.plan
N=2 R=4 B=3 L=5

run 0 "check vsepp" "$ITRC" check "$SRC/models/vsepp.ir"
contains "$OUT" "vsepp.ir: ok: 4 entries" "vsepp checks"
run 0 "compile vsepp (small)" "$ITRC" compile "$SRC/models/vsepp.ir" -D D=16 -D W=8 -D V=50 -D R=$R -o "$P"
run 0 "dump vsepp" "$ITRC" dump "$P"
contains "$OUT" "encode_image(regions: f32[N, R, 2048]) -> (img_emb: f32[N, 16])" "encode_image signature"
run 0 "init vsepp" "$ITR_RUN" "$P" init --seed 7 -o "$TMP/w.safetensors"

# regions: N x R x 2048 floats cycling through 1, 0.5, -0.25, 2
repeat_bytes "$TMP/regions.bin" $((N * R * 2048 * 4)) '\x00\x00\x80\x3f\x00\x00\x00\x3f\x00\x00\x80\xbe\x00\x00\x00\x40'
write_npy "$TMP/regions.npy" '<f4' "($N, $R, 2048)" "$TMP/regions.bin"
# words: B x L ids cycling through 1..4; lengths 5, 3, 1
repeat_bytes "$TMP/words.bin" $((B * L * 4)) '\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00'
write_npy "$TMP/words.npy" '<i4' "($B, $L)" "$TMP/words.bin"
printf '\x05\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00' >"$TMP/lengths.bin"
write_npy "$TMP/lengths.npy" '<i4' "($B,)" "$TMP/lengths.bin"

run 0 "encode_image" "$ITR_RUN" "$P" run encode_image --in regions="$TMP/regions.npy" --weights "$TMP/w.safetensors" --out "$TMP/out"
contains "$OUT" "img_emb: f32 [$N, 16] -> $TMP/out/img_emb.npy" "image embeddings"
run 0 "encode_text" "$ITR_RUN" "$P" run encode_text --in words="$TMP/words.npy" --in lengths="$TMP/lengths.npy" --weights "$TMP/w.safetensors" --out "$TMP/out"
contains "$OUT" "cap_emb: f32 [$B, 16] -> $TMP/out/cap_emb.npy" "caption embeddings"
run 0 "score" "$ITR_RUN" "$P" run score --in v="$TMP/out/img_emb.npy" --in u="$TMP/out/cap_emb.npy" --weights "$TMP/w.safetensors" --out "$TMP/out"
contains "$OUT" "sims: f32 [$N, $B] -> $TMP/out/sims.npy" "similarity matrix"
# the same run on the unsimplified plan gives the same bytes
run 0 "compile vsepp -O0" "$ITRC" compile -O0 "$SRC/models/vsepp.ir" -D D=16 -D W=8 -D V=50 -D R=$R -o "$TMP/vsepp0.plan"
run 0 "encode_text -O0" "$ITR_RUN" "$TMP/vsepp0.plan" run encode_text --in words="$TMP/words.npy" --in lengths="$TMP/lengths.npy" --weights "$TMP/w.safetensors" --out "$TMP/out0"
check cmp -s "$TMP/out/cap_emb.npy" "$TMP/out0/cap_emb.npy" "-O1 and -O0 agree bit for bit"

summary
