# docs/ops.md embeds exactly what `itrc ops --markdown` prints, between its
# generated-table markers. When this fails, regenerate the table:
#   itrc ops --markdown, pasted between the markers in docs/ops.md.
source "$(dirname "$0")/lib.bash" "$@"
DOC=$SRC/docs/ops.md
BEGIN='<!-- BEGIN GENERATED OP TABLE -->'
END='<!-- END GENERATED OP TABLE -->'

check test -f "$DOC" "docs/ops.md exists"
check test "$(grep -cxF -- "$BEGIN" "$DOC")" -eq 1 "one begin marker"
check test "$(grep -cxF -- "$END" "$DOC")" -eq 1 "one end marker"
run 0 "itrc ops --markdown" "$ITRC" ops --markdown
cp "$OUT" "$TMP/generated.md"
awk -v b="$BEGIN" -v e="$END" '$0 == e { inside = 0 } inside { print } $0 == b { inside = 1 }' "$DOC" >"$TMP/embedded.md"
if diff -u "$TMP/embedded.md" "$TMP/generated.md" >"$TMP/diff"; then pass; else
  fail "docs/ops.md is out of date with ir/ops.def; regenerate it with 'itrc ops --markdown'"
  head -40 "$TMP/diff" >&2
fi
summary
