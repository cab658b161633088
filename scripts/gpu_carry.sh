#!/usr/bin/env bash
# Send files larger than one device call may carry to a lent GPU machine, one part per call.
#
#   here:  scripts/gpu_carry.sh split OUT_DIR PART_MIB FILE...
#          -> OUT_DIR/part-00, part-01, ... (each at most PART_MIB MiB, every part names the total and
#             the SHA-256 of the whole stream); carry one part folder per call
#   there: scripts/gpu_carry.sh join PART_DIR DEST
#          -> keeps the part under DEST/.parts; once every part has arrived, checks the stream and
#             unpacks the files into DEST (a part sent twice is harmless; prints what is missing)
#
# Files keep their base names; compress beforehand where it pays (`xz` shrinks an uncompressed
# `emolens data pack` file by about a quarter; a compressed one hardly at all).
set -euo pipefail

split_files() {
  local out=$1 mib=$2
  shift 2
  [ $# -gt 0 ] || { echo "split: no files given" >&2; exit 2; }
  local f
  for f in "$@"; do [ -f "$f" ] || { echo "split: $f is not a file" >&2; exit 2; }; done
  mkdir -p "$out"
  local stage
  stage=$(mktemp -d "$out/.stage.XXXXXX")
  local args=()
  for f in "$@"; do args+=(-C "$(dirname "$f")" "$(basename "$f")"); done
  tar cf - "${args[@]}" | split -b "${mib}M" -d -a 2 - "$stage/chunk."
  local chunks=("$stage"/chunk.*) n i sum
  sum=$(cat "${chunks[@]}" | sha256sum | cut -d' ' -f1)
  n=${#chunks[@]}
  for ((i = 0; i < n; i++)); do
    local part
    part=$(printf '%s/part-%02d' "$out" "$i")
    rm -rf "$part" && mkdir -p "$part"
    mv "${chunks[$i]}" "$part/"
    printf '%s %s\n' "$n" "$sum" >"$part/parts"
  done
  rm -rf "$stage"
  echo "$n part(s) in $out: $(du -sh "$out" | cut -f1) for $*"
}

join_part() {
  local part=$1 dest=$2
  [ -f "$part/parts" ] || { echo "join: $part holds no 'parts' file (not made by gpu_carry.sh split)" >&2; exit 2; }
  mkdir -p "$dest/.parts"
  cp "$part"/chunk.* "$part/parts" "$dest/.parts/"
  local n sum have
  read -r n sum <"$dest/.parts/parts"
  have=$(find "$dest/.parts" -name 'chunk.*' | wc -l)
  if [ "$have" -lt "$n" ]; then echo "join: $have of $n parts in $dest/.parts"; return 0; fi
  local got
  got=$(cat "$dest/.parts"/chunk.* | sha256sum | cut -d' ' -f1)
  [ "$got" = "$sum" ] || { echo "join: the $n parts do not add up (sha256 $got, expected $sum)" >&2; exit 1; }
  cat "$dest/.parts"/chunk.* | tar xf - -C "$dest"
  rm -rf "$dest/.parts"
  echo "join: unpacked into $dest:"
  ls -la "$dest"
}

case ${1:-} in
  split) [ $# -ge 4 ] || { echo "usage: $0 split OUT_DIR PART_MIB FILE..." >&2; exit 2; }; shift; split_files "$@" ;;
  join) [ $# -eq 3 ] || { echo "usage: $0 join PART_DIR DEST" >&2; exit 2; }; shift; join_part "$@" ;;
  *) echo "usage: $0 split OUT_DIR PART_MIB FILE... | join PART_DIR DEST" >&2; exit 2 ;;
esac
