#!/usr/bin/env bash
# Item 1: binary size, stripped, per architecture, and gzip size, against the
# floor program (bench/floor) built in the same run with the same recipe.
set -euo pipefail
. "$BENCH_REPO/bench/lib.sh"

cat >"$ITEM_DIR/method.md" <<'EOF'
Both binaries are built in the same run by the Makefile's own `build` recipe
(`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=…"`), with
`GOOS=linux GOARCH=<arch>` set: the agent from the repository root, the floor
by running the same Makefile in `bench/floor` (`make -C bench/floor -f Makefile
build`). The floor (`bench/floor/main.go`) links the agent's modules — the
pgx pool, amqp091-go, the `net/http` client, yaml/v3 and `log/slog` — and
calls the entry points the agent uses on a path that never runs (a program
that only imported them would be no floor: the linker drops uncalled code).
Size is the file size in bytes; gzip is `gzip -9 -n` of it. Builds are
reproducible (`-trimpath`), so one build per binary is the measurement: there
is no run-to-run spread to report. "Stripped" is checked with `go tool nm`
(no symbol table). 11 MB is read as 11,000,000 bytes (SI), the stricter of
the two readings; the MiB figure is shown next to it. To show where the
floor's bytes come from, a full run also rebuilds the floor without one
module at a time (build tags `floor_no_<module>`).
EOF

printf 'arch\tfloor\tagent\tfloor_gz\tagent_gz\n' >"$ITEM_DIR/sizes.tsv"
for arch in $BENCH_ARCHES; do
  agent=$BENCH_OUT/build/attune-sensor-agent-linux-$arch
  floor=$BENCH_OUT/build/floor-linux-$arch
  if [ ! -x "$agent" ]; then
    GOOS=linux GOARCH=$arch make -s -C "$BENCH_REPO" build BIN="$agent"
  fi
  GOOS=linux GOARCH=$arch make -s -C "$BENCH_REPO/bench/floor" -f "$BENCH_REPO/Makefile" build BIN="$floor"
  for bin in "$agent" "$floor"; do
    nm_out=$(go tool nm "$bin" 2>&1 | head -n 3 || true)
    if ! grep -q 'no symbols' <<<"$nm_out"; then
      bench_die "$bin is not stripped: the Makefile's -s -w did not apply"
    fi
  done
  a=$(stat -c %s "$agent"); f=$(stat -c %s "$floor")
  agz=$(gzip -9 -n -c "$agent" | wc -c); fgz=$(gzip -9 -n -c "$floor" | wc -c)
  printf '%s\t%s\t%s\t%s\t%s\n' "$arch" "$f" "$a" "$fgz" "$agz" >>"$ITEM_DIR/sizes.tsv"
  bench_value "agent_${arch}_bytes" "$a"
  bench_value "floor_${arch}_bytes" "$f"
  bench_value "agent_${arch}_gzip_bytes" "$agz"
  bench_value "floor_${arch}_gzip_bytes" "$fgz"

  r=$(bench_ratio "$a" "$f")
  bench_row "linux/$arch stripped, agent / floor" "≤ 1.15 × floor ($(bench_bytes "$f"))" "$(bench_bytes "$a")" "$r" "$(bench_verdict "$r" '<=' 1.15)"
  if [ "$arch" = amd64 ]; then
    r=$(bench_ratio "$a" 11000000)
    bench_row "linux/amd64 stripped, absolute" "≤ 11 MB (11,000,000 B)" "$(bench_bytes "$a")" "$r" "$(bench_verdict "$a" '<=' 11000000)"
  fi
  bench_row "linux/$arch gzip -9, agent / floor" "— (reported)" "$(bench_bytes "$agz") vs floor $(bench_bytes "$fgz")" "$(bench_ratio "$agz" "$fgz")" "—"
done

# Where the floor's bytes come from: the floor rebuilt without one module at
# a time (build tags floor_no_<module>, host architecture, full runs only).
if [ "$BENCH_MODE" = full ]; then
  arch=$BENCH_HOST_ARCH
  f=$(stat -c %s "$BENCH_OUT/build/floor-linux-$arch")
  a=$(stat -c %s "$BENCH_OUT/build/attune-sensor-agent-linux-$arch")
  {
    printf '\nWhat each module adds to the floor (linux/%s): the floor rebuilt without it\n' "$arch"
    printf '(build tag `floor_no_<module>`, same recipe); modules share standard-library\n'
    printf 'code (crypto/tls, encoding/json…), so the parts do not add up to the whole.\n\n'
    printf '| module left out | floor without it | the module adds |\n|---|---:|---:|\n'
  } >>"$ITEM_DIR/notes.md"
  for mod in pgx amqp http yaml slog; do
    bin=$BENCH_OUT/build/floor-no-$mod-linux-$arch
    GOFLAGS="${GOFLAGS:+$GOFLAGS }-tags=floor_no_$mod" GOOS=linux GOARCH=$arch \
      make -s -C "$BENCH_REPO/bench/floor" -f "$BENCH_REPO/Makefile" build BIN="$bin"
    without=$(stat -c %s "$bin")
    bench_value "floor_marginal_${mod}_bytes" "$((f - without))"
    printf '| %s | %s | %s |\n' "$mod" "$(bench_bytes "$without")" "$(bench_bytes $((f - without)))" >>"$ITEM_DIR/notes.md"
  done
  printf '| (the agent'"'"'s own code over the floor) | | %s |\n' "$(bench_bytes $((a - f)))" >>"$ITEM_DIR/notes.md"
fi

# Plot: floor and agent side by side, raw and gzip, per architecture (MiB).
awk -F'\t' 'NR > 1 {
  printf "\"%s\"\t%.3f\t%.3f\n", $1, $2 / 1048576, $3 / 1048576
  printf "\"%s gzip\"\t%.3f\t%.3f\n", $1, $4 / 1048576, $5 / 1048576 }' "$ITEM_DIR/sizes.tsv" >"$ITEM_DIR/plot.dat"
cat >"$ITEM_DIR/plot.gp" <<'EOF'
set output outfile
set title "Item 1: stripped binary size (MiB), floor vs agent"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set ylabel "MiB"
set yrange [0:*]
set grid ytics
set key top right
bar = 11000000 / 1048576.0
set arrow from graph 0, first bar to graph 1, first bar nohead dashtype 2 lc rgb "red"
set label "11 MB bar (amd64)" at graph 0.68, first bar offset 0, -0.8 tc rgb "red"
plot "plot.dat" using 2:xtic(1) title "floor (deps only)", "" using 3 title "agent"
EOF
